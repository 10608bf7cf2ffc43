#include "dupscope/grouping.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dupscope {

std::vector<int32_t> star_groups(int64_t n, const int32_t* a, const int32_t* b, const float* score,
                                 int64_t pairs, float threshold, const uint8_t* skip) {
  if (n < 0 || pairs < 0) throw std::invalid_argument("negative size");
  // Links as CSR adjacency, both directions.
  std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
  for (int64_t p = 0; p < pairs; ++p) {
    if (!(score[p] >= threshold) || (skip && skip[p])) continue;
    const int32_t x = a[p], y = b[p];
    if (x < 0 || y < 0 || x >= n || y >= n || x == y)
      throw std::invalid_argument("pair " + std::to_string(p) + " is not two different rows in [0, n)");
    ++start[x + 1];
    ++start[y + 1];
  }
  for (int64_t i = 0; i < n; ++i) start[i + 1] += start[i];
  std::vector<int32_t> nbr(static_cast<size_t>(start[n]));
  std::vector<float> sim(static_cast<size_t>(start[n]));
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t p = 0; p < pairs; ++p) {
      if (!(score[p] >= threshold) || (skip && skip[p])) continue;
      const int32_t x = a[p], y = b[p];
      nbr[fill[x]] = y, sim[fill[x]++] = score[p];
      nbr[fill[y]] = x, sim[fill[y]++] = score[p];
    }
  }
  // Each list from the highest score down, ties by the lower row.
  std::vector<int32_t> order;
  std::vector<int32_t> tmp_n;
  std::vector<float> tmp_s;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s0 = start[i], len = start[i + 1] - s0;
    if (len < 2) continue;
    order.resize(len);
    for (int64_t q = 0; q < len; ++q) order[q] = static_cast<int32_t>(q);
    std::sort(order.begin(), order.end(), [&](int32_t u, int32_t v) {
      return sim[s0 + u] != sim[s0 + v] ? sim[s0 + u] > sim[s0 + v] : nbr[s0 + u] < nbr[s0 + v];
    });
    tmp_n.assign(nbr.begin() + s0, nbr.begin() + s0 + len);
    tmp_s.assign(sim.begin() + s0, sim.begin() + s0 + len);
    for (int64_t q = 0; q < len; ++q) nbr[s0 + q] = tmp_n[order[q]], sim[s0 + q] = tmp_s[order[q]];
  }
  // Visit order: most links, then the best link, then the row.
  std::vector<int32_t> visit;
  for (int64_t i = 0; i < n; ++i)
    if (start[i + 1] > start[i]) visit.push_back(static_cast<int32_t>(i));
  std::sort(visit.begin(), visit.end(), [&](int32_t u, int32_t v) {
    const int64_t du = start[u + 1] - start[u], dv = start[v + 1] - start[v];
    if (du != dv) return du > dv;
    if (sim[start[u]] != sim[start[v]]) return sim[start[u]] > sim[start[v]];
    return u < v;
  });
  constexpr int32_t kTaken = -2;  // in the group being built
  std::vector<int32_t> group(static_cast<size_t>(n), -1), members, touched;
  std::vector<int32_t> links(static_cast<size_t>(n), 0);  // links to the members after the representative
  for (const int32_t i : visit) {
    if (group[i] != -1) continue;
    members.assign(1, i);
    group[i] = kTaken;
    touched.clear();
    for (int64_t e = start[i]; e < start[i + 1]; ++e) {
      const int32_t j = nbr[e];
      if (group[j] != -1 || links[j] != static_cast<int32_t>(members.size()) - 1) continue;
      members.push_back(j);
      group[j] = kTaken;
      for (int64_t f = start[j]; f < start[j + 1]; ++f)
        if (links[nbr[f]]++ == 0) touched.push_back(nbr[f]);
    }
    for (const int32_t x : touched) links[x] = 0;
    const int32_t label = members.size() > 1 ? i : -1;
    for (const int32_t m : members) group[m] = label;
  }
  return group;
}

}  // namespace dupscope
