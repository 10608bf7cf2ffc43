// The AVX2 Hamming matcher for 32-byte descriptors: 8 columns of the distance matrix per step,
// popcounts by nibble table lookup (vpshufb) summed per 64-bit lane (vpsadbw), the row's best two
// kept per lane and merged at the end of the row, the columns' best two updated with blends.
// The caller's transposed planes hold each block of 8 columns in the order 0 2 4 6 1 3 5 7, so
// that interleaving the two halves' sums gives the columns in order.
#include <immintrin.h>

#include <vector>

#include "hamming_internal.hpp"

namespace dupscope {
namespace hamming_detail {
namespace {

// Four 64-bit popcounts of (column words ^ x) summed over the 4 words, for 4 planes' slots.
inline __m256i distances4(const uint64_t* col, int64_t ldb, const __m256i* x) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i bytes = _mm256_setzero_si256();  // per-byte counts, at most 4 * 8 = 32
  for (int w = 0; w < 4; ++w) {
    const __m256i v = _mm256_xor_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + w * ldb)), x[w]);
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(_mm256_shuffle_epi8(table, lo), _mm256_shuffle_epi8(table, hi)));
  }
  return _mm256_sad_epu8(bytes, _mm256_setzero_si256());
}

// Offers the 8 distances `d` (lanes where `valid` is all ones) to the best-two vectors.
inline void offer8(__m256i d, __m256i valid, __m256i id, __m256i& d1, __m256i& d2, __m256i& idx) {
  const __m256i m1 = _mm256_and_si256(valid, _mm256_cmpgt_epi32(d1, d));
  const __m256i m2 = _mm256_andnot_si256(m1, _mm256_and_si256(valid, _mm256_cmpgt_epi32(d2, d)));
  d2 = _mm256_blendv_epi8(d2, d1, m1);
  d2 = _mm256_blendv_epi8(d2, d, m2);
  d1 = _mm256_blendv_epi8(d1, d, m1);
  idx = _mm256_blendv_epi8(idx, id, m1);
}

}  // namespace

void best_two_avx2(const uint64_t* a, int64_t na, const uint64_t* bt, int64_t nb, int64_t ldb,
                   Best2* fwd, Best2* back) {
  std::vector<int32_t> c1(ldb, kNone), c2(ldb, kNone), ci(ldb, -1);
  const __m256i none = _mm256_set1_epi32(kNone);
  const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  alignas(32) int32_t l1[8], l2[8], li[8];
  for (int64_t i = 0; i < na; ++i) {
    __m256i x[4];
    for (int w = 0; w < 4; ++w) x[w] = _mm256_set1_epi64x(static_cast<long long>(a[i * 4 + w]));
    const __m256i row = _mm256_set1_epi32(static_cast<int32_t>(i));
    __m256i r1 = none, r2 = none, ri = _mm256_set1_epi32(-1);
    for (int64_t j = 0; j < nb; j += 8) {
      const __m256i even = distances4(bt + j, ldb, x);      // columns j, j+2, j+4, j+6
      const __m256i odd = distances4(bt + j + 4, ldb, x);   // columns j+1, j+3, j+5, j+7
      const __m256i d = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xaa);
      const __m256i cols = _mm256_add_epi32(step, _mm256_set1_epi32(static_cast<int32_t>(j)));
      const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(nb)), cols);
      offer8(d, valid, cols, r1, r2, ri);
      __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c1.data() + j));
      __m256i b2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c2.data() + j));
      __m256i bi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ci.data() + j));
      offer8(d, valid, row, b1, b2, bi);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c1.data() + j), b1);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c2.data() + j), b2);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ci.data() + j), bi);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(l1), r1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(l2), r2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(li), ri);
    fwd[i] = merge_lanes(l1, l2, li, 8);
  }
  for (int64_t j = 0; j < nb; ++j) back[j] = Best2{c1[j], c2[j], ci[j]};
}

}  // namespace hamming_detail
}  // namespace dupscope
