#include "dupscope/grouping.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dupscope {

namespace {

void check_rows(int64_t n, int32_t x, int32_t y, int64_t p, const char* what) {
  if (x < 0 || y < 0 || x >= n || y >= n || x == y)
    throw std::invalid_argument(std::string(what) + " " + std::to_string(p) +
                                " is not two different rows in [0, n)");
}

// Groups as explicit member lists: root[i] is i's group, members chained through next[] from
// head[root]; merging relabels the smaller group, so finding a group is one load.
struct Groups {
  std::vector<int32_t> root, next, tail, size;
  explicit Groups(int64_t n) : root(n), next(n, -1), tail(n), size(n, 1) {
    for (int64_t i = 0; i < n; ++i) root[i] = tail[i] = static_cast<int32_t>(i);
  }
  // Joins the groups with roots x and y; returns the surviving root.
  int32_t join(int32_t x, int32_t y) {
    if (size[x] < size[y]) std::swap(x, y);
    for (int32_t m = y; m != -1; m = next[m]) root[m] = x;
    next[tail[x]] = y;
    tail[x] = tail[y];
    size[x] += size[y];
    return x;
  }
};

}  // namespace

std::vector<Merge> linkage_merges(int64_t n, const int32_t* a, const int32_t* b, const float* score, int64_t pairs) {
  if (n < 0 || pairs < 0) throw std::invalid_argument("negative size");
  if (n > INT32_MAX) throw std::invalid_argument("too many images for 32-bit rows");
  // The pairs in the order they are taken.
  struct Edge {
    float s;
    int32_t lo, hi;
  };
  std::vector<Edge> edges;
  edges.reserve(static_cast<size_t>(pairs));
  for (int64_t p = 0; p < pairs; ++p) {
    check_rows(n, a[p], b[p], p, "pair");
    if (std::isnan(score[p])) continue;
    edges.push_back({score[p], std::min(a[p], b[p]), std::max(a[p], b[p])});
  }
  const auto before = [](const Edge& x, const Edge& y) {
    if (x.s != y.s) return x.s > y.s;
    return x.lo != y.lo ? x.lo < y.lo : x.hi < y.hi;
  };
  // Pairs usually come sorted by score already (dupscope.pairs.neighbor_pairs), ties in another
  // order: then only each run of equal scores needs sorting, which is much cheaper than a full sort.
  const bool by_score = std::is_sorted(edges.begin(), edges.end(), [](const Edge& x, const Edge& y) { return x.s > y.s; });
  if (by_score) {
    for (size_t i = 0; i < edges.size();) {
      size_t j = i + 1;
      while (j < edges.size() && edges[j].s == edges[i].s) ++j;
      if (j - i > 1 && !std::is_sorted(edges.begin() + i, edges.begin() + j, before))
        std::sort(edges.begin() + i, edges.begin() + j, before);
      i = j;
    }
  } else {
    std::sort(edges.begin(), edges.end(), before);
  }
  if (edges.size() >= static_cast<size_t>(INT32_MAX)) throw std::invalid_argument("too many pairs (2^31 or more)");
  // Each image's links, sorted by the other row, with the rank at which each is taken (CSR).
  std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
  for (const Edge& e : edges) ++start[e.lo + 1], ++start[e.hi + 1];
  for (int64_t i = 0; i < n; ++i) start[i + 1] += start[i];
  struct Link {
    int32_t other, rank;
  };
  std::vector<Link> links(edges.size() * 2);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (size_t r = 0; r < edges.size(); ++r) {
      const Edge& e = edges[r];
      links[fill[e.lo]++] = {e.hi, static_cast<int32_t>(r)};
      links[fill[e.hi]++] = {e.lo, static_cast<int32_t>(r)};
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    std::sort(links.begin() + start[i], links.begin() + start[i + 1],
              [](const Link& x, const Link& y) { return x.other < y.other; });
    // A pair given twice would make the look-ups below ambiguous.
    for (int64_t q = start[i] + 1; q < start[i + 1]; ++q)
      if (links[q].other == links[q - 1].other)
        throw std::invalid_argument("the pair of rows " + std::to_string(i) + " and " +
                                    std::to_string(links[q].other) + " is given twice");
  }
  // Whether x and y are linked by a pair taken at rank r or before.
  const auto taken = [&](int32_t x, int32_t y, int32_t r) {
    const auto lo = links.begin() + start[x], hi = links.begin() + start[x + 1];
    const auto it = std::lower_bound(lo, hi, y, [](const Link& l, int32_t v) { return l.other < v; });
    return it != hi && it->other == y && it->rank <= r;
  };
  Groups g(n);
  std::vector<Merge> merges;
  for (size_t r = 0; r < edges.size(); ++r) {
    const int32_t x = g.root[edges[r].lo], y = g.root[edges[r].hi];
    if (x == y) continue;
    // Complete when every cross pair is taken; stops at the first that is not (a look-up each).
    bool complete = true;
    if (static_cast<int64_t>(g.size[x]) * g.size[y] > 1) {
      const int32_t small = g.size[x] <= g.size[y] ? x : y, other = small == x ? y : x;
      for (int32_t m = small; m != -1 && complete; m = g.next[m])
        for (int32_t o = other; o != -1 && complete; o = g.next[o]) complete = taken(m, o, static_cast<int32_t>(r));
    }
    if (!complete) continue;
    merges.push_back({edges[r].lo, edges[r].hi, edges[r].s});
    g.join(x, y);
  }
  return merges;
}

std::vector<int32_t> replay_merges(int64_t n, const Merge* merges, int64_t count, float threshold,
                                   const int32_t* skip_a, const int32_t* skip_b, int64_t skips) {
  if (n < 0 || count < 0 || skips < 0) throw std::invalid_argument("negative size");
  // Each image's "not a duplicate" partners, as CSR.
  std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
  for (int64_t q = 0; q < skips; ++q) {
    check_rows(n, skip_a[q], skip_b[q], q, "skip pair");
    ++start[skip_a[q] + 1], ++start[skip_b[q] + 1];
  }
  for (int64_t i = 0; i < n; ++i) start[i + 1] += start[i];
  std::vector<int32_t> partner(static_cast<size_t>(start[n]));
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t q = 0; q < skips; ++q) {
      partner[fill[skip_a[q]]++] = skip_b[q];
      partner[fill[skip_b[q]]++] = skip_a[q];
    }
  }
  // Groups holding a skip partner, and how many such members each group has: a merge is checked
  // only when both groups hold one.
  Groups g(n);
  std::vector<int32_t> marked(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) marked[i] = start[i + 1] > start[i];
  for (int64_t m = 0; m < count; ++m) {
    const Merge& mg = merges[m];
    if (!(mg.level >= threshold)) break;  // levels never increase
    check_rows(n, mg.u, mg.v, m, "merge");
    const int32_t x = g.root[mg.u], y = g.root[mg.v];
    if (x == y) continue;
    if (marked[x] && marked[y]) {
      const int32_t small = g.size[x] <= g.size[y] ? x : y, other = small == x ? y : x;
      bool refused = false;
      for (int32_t i = small; i != -1 && !refused; i = g.next[i])
        for (int64_t q = start[i]; q < start[i + 1] && !refused; ++q) refused = g.root[partner[q]] == other;
      if (refused) continue;
    }
    const int32_t z = g.join(x, y);
    marked[z] = marked[x] + marked[y];
  }
  std::vector<int32_t> lowest(static_cast<size_t>(n), -1), label(static_cast<size_t>(n), -1);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = g.root[i];
    if (g.size[r] < 2) continue;
    if (lowest[r] == -1) lowest[r] = static_cast<int32_t>(i);  // rows ascend: the first is the lowest
    label[i] = lowest[r];
  }
  return label;
}

}  // namespace dupscope
