#include "dupscope/topk.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include "dupscope/half.hpp"

namespace dupscope {

namespace {

// a is worse than b: lower similarity, or equal similarity and higher index.
inline bool worse(float va, int32_t ia, float vb, int32_t ib) {
  return va < vb || (va == vb && ia > ib);
}

// The same without branches (bitwise, both sides evaluated): the heap's sift-down compares
// entries whose order is a coin toss, where a branch mispredicts half the time.
inline bool worse_nb(float va, int32_t ia, float vb, int32_t ib) {
  return static_cast<bool>(static_cast<int>(va < vb) | (static_cast<int>(va == vb) & static_cast<int>(ia > ib)));
}

}  // namespace

TopK::TopK(int64_t n, int k, int64_t block, int spare, float margin)
    : n_(n), k_(k), block_(block), spare_(spare), margin_(margin),
      val_(static_cast<size_t>(n) * k), idx_(static_cast<size_t>(n) * k),
      count_(static_cast<size_t>(n), 0),
      spare_val_(static_cast<size_t>(spare > 0 ? n * spare : 0)),
      spare_idx_(static_cast<size_t>(spare > 0 ? n * spare : 0)),
      spare_count_(static_cast<size_t>(spare > 0 ? n : 0), 0),
      overflow_(static_cast<size_t>(spare > 0 || margin > 0 ? n : 0), 0),
      locks_(new std::mutex[static_cast<size_t>((n + block - 1) / block + 1)]) {}

float TopK::threshold(int64_t row) const {
  // Below this value nothing can enter the row; equal values are decided by index in push().
  return count_[row] < k_ ? -std::numeric_limits<float>::infinity() : val_[row * k_];
}

int TopK::push(int64_t row, float v, int32_t j, float* ev, int32_t* ej) {
  float* hv = val_.data() + row * k_;
  int32_t* hi = idx_.data() + row * k_;
  int32_t cnt = count_[row];
  int64_t pos;
  if (cnt < k_) {  // sift up from the end
    pos = cnt++;
    count_[row] = cnt;
    while (pos > 0) {
      const int64_t parent = (pos - 1) / 2;
      if (!worse(v, j, hv[parent], hi[parent])) break;
      hv[pos] = hv[parent];
      hi[pos] = hi[parent];
      pos = parent;
    }
    hv[pos] = v;
    hi[pos] = j;
    return 1;
  }
  if (!worse(hv[0], hi[0], v, j)) return 0;
  *ev = hv[0];
  *ej = hi[0];
  pos = 0;  // replace the worst and sift down
  for (;;) {
    const int64_t l = 2 * pos + 1;
    if (l >= k_) break;
    const int64_t r = l + 1 < k_ ? l + 1 : l;  // no right child: compare l with itself (not worse)
    const int64_t w = l + static_cast<int64_t>(worse_nb(hv[r], hi[r], hv[l], hi[l]));
    if (!worse_nb(hv[w], hi[w], v, j)) break;
    hv[pos] = hv[w];
    hi[pos] = hi[w];
    pos = w;
  }
  hv[pos] = v;
  hi[pos] = j;
  return 2;
}

void TopK::keep_near(int64_t row, float v, int32_t j) {
  const float cut = scan_threshold(row);
  if (v < cut || overflow_[row]) return;
  if (spare_ == 0) {  // no room for near misses at all
    overflow_[row] = 1;
    return;
  }
  float* sv = spare_val_.data() + row * spare_;
  int32_t* si = spare_idx_.data() + row * spare_;
  int32_t cnt = spare_count_[row];
  if (cnt == spare_) {  // full: drop the near misses the k-th best has left behind since
    int32_t w = 0;
    for (int32_t t = 0; t < cnt; ++t)
      if (sv[t] >= cut) {
        sv[w] = sv[t];
        si[w++] = si[t];
      }
    cnt = w;
    if (cnt == spare_) {
      overflow_[row] = 1;
      return;
    }
  }
  sv[cnt] = v;
  si[cnt] = j;
  spare_count_[row] = cnt + 1;
}

void TopK::offer(int64_t row, float v, int32_t j) {
  float ev = 0.0f;
  int32_t ej = -1;
  const int r = push(row, v, j, &ev, &ej);
  if (overflow_.empty()) return;  // no near misses wanted (float32 lists)
  if (r == 0) keep_near(row, v, j);
  else if (r == 2) keep_near(row, ev, ej);
}

void TopK::offer_tile(const float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                      const uint8_t* valid, bool diag, ScanFn scan) {
  if (k_ == 0) return;
  const auto held = lock_blocks(i0, j0);
  thread_local std::vector<float> cthr;
  thread_local std::vector<int32_t> hits;
  cthr.resize(static_cast<size_t>(n));
  hits.resize(static_cast<size_t>(n));
  if (!diag) thresholds_held(j0, n, valid, cthr.data());
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = i0 + r;
    if (!valid[i]) continue;
    const float* cr = c + r * ldc;
    float rthr = scan_threshold(i);
    const int64_t h = scan(cr, n, rthr, diag ? nullptr : cthr.data(), hits.data());
    for (int64_t q = 0; q < h; ++q) {
      const int64_t s = hits[q], j = j0 + s;
      const float v = cr[s];
      if (j == i || !valid[j]) continue;
      if (v >= rthr) {
        offer(i, v, static_cast<int32_t>(j));
        rthr = scan_threshold(i);
      }
      if (!diag && v >= cthr[s]) {
        offer(j, v, static_cast<int32_t>(i));
        cthr[s] = scan_threshold(j);
      }
    }
  }
}

void TopK::offer_candidates(const TileCandidate* c, int64_t count, int64_t i0, int64_t j0,
                            const uint8_t* valid, bool diag) {
  if (k_ == 0) return;
  const auto held = lock_blocks(i0, j0);
  for (int64_t q = 0; q < count; ++q) {
    const int64_t i = i0 + c[q].r, j = j0 + c[q].s;
    const float v = c[q].v;
    if (i == j || !valid[i] || !valid[j]) continue;
    if (v >= scan_threshold(i)) offer(i, v, static_cast<int32_t>(j));
    if (!diag && v >= scan_threshold(j)) offer(j, v, static_cast<int32_t>(i));
  }
}

bool TopK::offer_rescored(const float* approx, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                          const uint8_t* valid, bool diag, ScanFn scan, float slack, int64_t max_hits,
                          const Rescore& exact) {
  if (k_ == 0) return true;
  const auto held = lock_blocks(i0, j0);
  thread_local std::vector<float> cthr, vals;
  thread_local std::vector<int32_t> hits;
  thread_local std::vector<int64_t> start;
  cthr.resize(static_cast<size_t>(n));
  vals.resize(static_cast<size_t>(n));
  hits.resize(static_cast<size_t>(max_hits + n));
  start.assign(static_cast<size_t>(m + 1), 0);
  // A threshold t in [0, 1] in the raw products' units, 2 t - 1, lowered by the slack (-inf and
  // +inf stay).
  auto raw = [slack](float t) { return 2.0f * t - 1.0f - slack; };
  if (!diag) {
    thresholds_held(j0, n, valid, cthr.data());
    for (int64_t s = 0; s < n; ++s) cthr[s] = raw(cthr[s]);
  }
  // First every row's positions at the thresholds of the moment: too many, and nothing is offered.
  int64_t total = 0;
  for (int64_t r = 0; r < m; ++r) {
    start[r] = total;
    if (valid[i0 + r])
      total += scan(approx + r * ldc, n, raw(threshold(i0 + r)), diag ? nullptr : cthr.data(), hits.data() + total);
    if (total > max_hits) return false;
  }
  start[m] = total;
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = i0 + r, h = start[r + 1] - start[r];
    if (h == 0) continue;
    const int32_t* hr = hits.data() + start[r];
    exact(r, hr, h, vals.data());
    for (int64_t q = 0; q < h; ++q) {
      const int64_t j = j0 + hr[q];
      const float v = vals[q];
      if (j == i || !valid[j]) continue;
      if (v >= threshold(i)) offer(i, v, static_cast<int32_t>(j));
      if (!diag && v >= threshold(j)) offer(j, v, static_cast<int32_t>(i));
    }
  }
  return true;
}

void TopK::thresholds(int64_t r0, int64_t n, const uint8_t* valid, float* out) const {
  std::lock_guard<std::mutex> lock(locks_[r0 / block_]);
  thresholds_held(r0, n, valid, out);
}

void TopK::thresholds_held(int64_t r0, int64_t n, const uint8_t* valid, float* out) const {
  for (int64_t t = 0; t < n; ++t)
    out[t] = valid[r0 + t] ? scan_threshold(r0 + t) : std::numeric_limits<float>::infinity();
}

std::pair<std::unique_lock<std::mutex>, std::unique_lock<std::mutex>> TopK::lock_blocks(int64_t i0, int64_t j0) const {
  const int64_t bi = i0 / block_, bj = j0 / block_;
  std::unique_lock<std::mutex> first(locks_[std::min(bi, bj)]);
  std::unique_lock<std::mutex> second;
  if (bi != bj) second = std::unique_lock<std::mutex>(locks_[std::max(bi, bj)]);
  return {std::move(first), std::move(second)};
}

bool TopK::candidates(int64_t row, std::vector<std::pair<float, int32_t>>& out) const {
  out.clear();
  const float* hv = val_.data() + row * k_;
  const int32_t* hi = idx_.data() + row * k_;
  for (int32_t t = 0; t < count_[row]; ++t) out.emplace_back(hv[t], hi[t]);
  if (spare_ > 0) {
    const float cut = scan_threshold(row);
    const float* sv = spare_val_.data() + row * spare_;
    const int32_t* si = spare_idx_.data() + row * spare_;
    for (int32_t t = 0; t < spare_count_[row]; ++t)
      if (sv[t] >= cut) out.emplace_back(sv[t], si[t]);
  }
  std::sort(out.begin(), out.end(), [](const std::pair<float, int32_t>& x, const std::pair<float, int32_t>& y) {
    return worse(y.first, y.second, x.first, x.second);
  });
  return overflow_.empty() || !overflow_[row];
}

namespace {

// The rows' heaps sorted best first, handed to `put(row, rank, index, value)`; rank >= count
// gets index -1.
template <class Put>
void sorted_rows(int64_t n, int k, const HugeVector<float>& val, const HugeVector<int32_t>& idx,
                 const std::vector<int32_t>& count, Put put) {
  std::vector<int> order(static_cast<size_t>(k));
  for (int64_t row = 0; row < n; ++row) {
    const float* hv = val.data() + row * k;
    const int32_t* hi = idx.data() + row * k;
    const int cnt = count[row];
    std::iota(order.begin(), order.begin() + cnt, 0);
    std::sort(order.begin(), order.begin() + cnt,
              [&](int a, int b) { return worse(hv[b], hi[b], hv[a], hi[a]); });
    for (int t = 0; t < k; ++t) {
      if (t < cnt) put(row, t, hi[order[t]], hv[order[t]]);
      else put(row, t, -1, 0.0f);
    }
  }
}

}  // namespace

void TopK::finish(int32_t* index, uint16_t* sim) const {
  sorted_rows(n_, k_, val_, idx_, count_, [&](int64_t row, int t, int32_t j, float v) {
    index[row * k_ + t] = j;
    sim[row * k_ + t] = j < 0 ? kHalfNaN : float_to_half(v);
  });
}

void TopK::finish_values(int32_t* index, float* sim) const {
  sorted_rows(n_, k_, val_, idx_, count_, [&](int64_t row, int t, int32_t j, float v) {
    index[row * k_ + t] = j;
    sim[row * k_ + t] = j < 0 ? std::numeric_limits<float>::quiet_NaN() : v;
  });
}

void merge_topk(int64_t n, int k, const int32_t* index_a, const float* sim_a, const int32_t* index_b,
                const float* sim_b, int32_t* index_out, float* sim_out) {
  std::vector<int32_t> ri(static_cast<size_t>(k));
  std::vector<float> rv(static_cast<size_t>(k));
  for (int64_t row = 0; row < n; ++row) {
    const int32_t* ia = index_a + row * k;
    const int32_t* ib = index_b + row * k;
    const float* va = sim_a + row * k;
    const float* vb = sim_b + row * k;
    int p = 0, q = 0;
    for (int t = 0; t < k; ++t) {
      const bool has_a = p < k && ia[p] >= 0, has_b = q < k && ib[q] >= 0;
      if (has_a && (!has_b || worse(vb[q], ib[q], va[p], ia[p]))) {
        ri[t] = ia[p];
        rv[t] = va[p++];
      } else if (has_b) {
        ri[t] = ib[q];
        rv[t] = vb[q++];
      } else {
        ri[t] = -1;
        rv[t] = std::numeric_limits<float>::quiet_NaN();
      }
    }
    std::copy(ri.begin(), ri.end(), index_out + row * k);
    std::copy(rv.begin(), rv.end(), sim_out + row * k);
  }
}

}  // namespace dupscope
