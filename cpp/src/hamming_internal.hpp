// Shared between the portable and the AVX-512 Hamming matchers (not part of the public headers).
#pragma once
#include <cstdint>
#include <limits>

namespace dupscope {
namespace hamming_detail {

constexpr int32_t kNone = std::numeric_limits<int32_t>::max();

// The two smallest distances offered so far and the index of the smallest (the first offered
// on ties, since only a strictly smaller distance replaces it).
struct Best2 {
  int32_t d1 = kNone;
  int32_t d2 = kNone;
  int32_t idx = -1;

  void offer(int32_t d, int32_t j) {
    if (d < d1) {
      d2 = d1;
      d1 = d;
      idx = j;
    } else if (d < d2) {
      d2 = d;
    }
  }
  // Lowe's test; a single candidate (no second) always passes.
  bool passes(float ratio) const {
    return idx >= 0 && (d2 == kNone || static_cast<float>(d1) < ratio * static_cast<float>(d2));
  }
};

// The row's best two from a vector kernel's per-lane best two (`lanes` lanes; lane L saw the
// columns j = L modulo lanes, in order): the smallest lane minimum, the lowest column on ties,
// and for the second the smaller of that lane's second and every other lane's minimum. Static:
// each kernel's translation unit (compiled with its own instruction set) keeps its own copy.
static inline Best2 merge_lanes(const int32_t* d1, const int32_t* d2, const int32_t* idx, int lanes) {
  int win = 0;
  for (int l = 1; l < lanes; ++l)
    if (d1[l] < d1[win] || (d1[l] == d1[win] && idx[l] >= 0 && idx[l] < idx[win])) win = l;
  Best2 f;
  f.d1 = d1[win];
  f.idx = idx[win];
  f.d2 = d2[win];
  for (int l = 0; l < lanes; ++l)
    if (l != win && d1[l] < f.d2) f.d2 = d1[l];
  return f;
}

// 32-byte descriptors (four 64-bit words, ORB's size). `a` is na x 4 words row-major; `bt` holds
// b transposed into four planes of `ldb` words (plane w, column j: word w of b[j]), ldb a
// multiple of 16 and >= nb. Fills fwd[i] with a[i]'s best two over b, and back[j] with b[j]'s
// best two over a, exactly as offering every distance in row-major order would.
// x86 only (hamming_avx512.cpp, hamming_avx2.cpp: its planes hold each block of 8 columns in
// the order 0 2 4 6 1 3 5 7, ldb a multiple of 8).
void best_two_avx2(const uint64_t* a, int64_t na, const uint64_t* bt, int64_t nb, int64_t ldb,
                   Best2* fwd, Best2* back);
void best_two_avx512(const uint64_t* a, int64_t na, const uint64_t* bt, int64_t nb, int64_t ldb,
                     Best2* fwd, Best2* back);
void best_two_avx512_vpopcnt(const uint64_t* a, int64_t na, const uint64_t* bt, int64_t nb,
                             int64_t ldb, Best2* fwd, Best2* back);
bool cpu_has_vpopcntdq();

}  // namespace hamming_detail
}  // namespace dupscope
