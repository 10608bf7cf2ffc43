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

// True when any of the 16 values at c reaches its threshold. Written as a branch-free
// reduction so the compiler vectorises it: most blocks of a tile are rejected here, in a few
// instructions, once the rows' heaps are full.
inline bool any_reaches(const float* c, float thr) {
  int any = 0;
  for (int t = 0; t < 16; ++t) any |= c[t] >= thr;
  return any != 0;
}
inline bool any_reaches(const float* c, const float* thr) {
  int any = 0;
  for (int t = 0; t < 16; ++t) any |= c[t] >= thr[t];
  return any != 0;
}

}  // namespace

TopK::TopK(int64_t n, int k, int64_t block)
    : n_(n), k_(k), block_(block),
      val_(static_cast<size_t>(n) * k), idx_(static_cast<size_t>(n) * k),
      count_(static_cast<size_t>(n), 0),
      locks_(new std::mutex[static_cast<size_t>((n + block - 1) / block + 1)]) {}

float TopK::threshold(int64_t row) const {
  // Below this value nothing can enter the row; equal values are decided by index in push().
  return count_[row] < k_ ? -std::numeric_limits<float>::infinity() : val_[row * k_];
}

bool TopK::push(int64_t row, float v, int32_t j) {
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
    return true;
  }
  if (!worse(hv[0], hi[0], v, j)) return false;
  pos = 0;  // replace the worst and sift down
  for (;;) {
    const int64_t l = 2 * pos + 1;
    if (l >= k_) break;
    int64_t w = l;
    if (l + 1 < k_ && worse(hv[l + 1], hi[l + 1], hv[l], hi[l])) w = l + 1;
    if (!worse(hv[w], hi[w], v, j)) break;
    hv[pos] = hv[w];
    hi[pos] = hi[w];
    pos = w;
  }
  hv[pos] = v;
  hi[pos] = j;
  return true;
}

void TopK::offer_rows(const float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                      const uint8_t* valid) {
  if (k_ == 0) return;
  std::lock_guard<std::mutex> lock(locks_[i0 / block_]);
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = i0 + r;
    if (!valid[i]) continue;
    const float* cr = c + r * ldc;
    float thr = threshold(i);
    for (int64_t s = 0; s < n; ++s) {
      if ((s & 15) == 0 && s + 16 <= n && !any_reaches(cr + s, thr)) {
        s += 15;
        continue;
      }
      if (cr[s] < thr) continue;
      const int64_t j = j0 + s;
      if (j == i || !valid[j]) continue;
      if (push(i, cr[s], static_cast<int32_t>(j))) thr = threshold(i);
    }
  }
}

void TopK::offer_cols(const float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                      const uint8_t* valid) {
  if (k_ == 0) return;
  std::lock_guard<std::mutex> lock(locks_[j0 / block_]);
  // Walk c row by row (unit stride) and keep one running threshold per column.
  std::vector<float> thr(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s)
    thr[s] = valid[j0 + s] ? threshold(j0 + s) : std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = i0 + r;
    if (!valid[i]) continue;
    const float* cr = c + r * ldc;
    for (int64_t s = 0; s < n; ++s) {
      if ((s & 15) == 0 && s + 16 <= n && !any_reaches(cr + s, thr.data() + s)) {
        s += 15;
        continue;
      }
      if (cr[s] < thr[s]) continue;
      const int64_t j = j0 + s;
      if (j == i) continue;
      if (push(j, cr[s], static_cast<int32_t>(i))) thr[s] = threshold(j);
    }
  }
}

namespace {

// The rows' heaps sorted best first, handed to `put(row, rank, index, value)`; rank >= count
// gets index -1.
template <class Put>
void sorted_rows(int64_t n, int k, const std::vector<float>& val, const std::vector<int32_t>& idx,
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
