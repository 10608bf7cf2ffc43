// The AVX-512 Hamming matcher for 32-byte descriptors: 16 columns of the distance matrix per
// step for two rows at a time, each row's best two kept per lane and merged at the end of the
// row, the columns' best two updated with masked blends (read and written once per two rows).
// Compiled twice: with DUPSCOPE_HAMMING_VPOPCNT the 64-bit popcount is one instruction
// (AVX512_VPOPCNTDQ), without it a nibble table lookup (AVX512BW).
#include <immintrin.h>

#include <vector>

#include "hamming_internal.hpp"

namespace dupscope {
namespace hamming_detail {
namespace {

// Popcount of each 64-bit lane of (x ^ y0) + ... over the four words of one descriptor block.
inline __m512i distances8(const uint64_t* col, int64_t ldb, const __m512i* x) {
#if defined(DUPSCOPE_HAMMING_VPOPCNT)
  __m512i s = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(col), x[0]));
  for (int w = 1; w < 4; ++w)
    s = _mm512_add_epi64(s, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(col + w * ldb), x[w])));
  return s;
#else
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512i bytes = _mm512_setzero_si512();  // per-byte counts, at most 4 * 8 = 32
  for (int w = 0; w < 4; ++w) {
    const __m512i v = _mm512_xor_si512(_mm512_loadu_si512(col + w * ldb), x[w]);
    const __m512i lo = _mm512_and_si512(v, low);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
    bytes = _mm512_add_epi8(bytes, _mm512_add_epi8(_mm512_shuffle_epi8(table, lo), _mm512_shuffle_epi8(table, hi)));
  }
  return _mm512_sad_epu8(bytes, _mm512_setzero_si512());
#endif
}

// Offers the 16 distances `d` (lanes where `valid`) to the best-two vectors (d1, d2, idx).
inline void offer16(__m512i d, __mmask16 valid, __m512i id, __m512i& d1, __m512i& d2, __m512i& idx) {
  const __mmask16 m1 = _mm512_mask_cmplt_epi32_mask(valid, d, d1);
  const __mmask16 m2 = _mm512_mask_cmplt_epi32_mask(valid & static_cast<__mmask16>(~m1), d, d2);
  d2 = _mm512_mask_mov_epi32(d2, m1, d1);
  d2 = _mm512_mask_mov_epi32(d2, m2, d);
  d1 = _mm512_mask_mov_epi32(d1, m1, d);
  idx = _mm512_mask_mov_epi32(idx, m1, id);
}

// Rows of a per pass over the columns.
constexpr int kRows = 2;

// R rows of a against every column: each block of 16 columns is loaded once for the R rows, and
// the columns' best two are read and written once per block, offered the R rows in order (the
// same sequence as one row at a time).
template <int R>
void rows_against_columns(const uint64_t* a, int64_t i0, const uint64_t* bt, int64_t nb, int64_t ldb,
                          int32_t* c1, int32_t* c2, int32_t* ci, Best2* fwd) {
  const __m512i none = _mm512_set1_epi32(kNone);
  const __m512i step = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i x[R][4], r1[R], r2[R], ri[R];
  for (int r = 0; r < R; ++r) {
    for (int w = 0; w < 4; ++w) x[r][w] = _mm512_set1_epi64(static_cast<long long>(a[(i0 + r) * 4 + w]));
    r1[r] = none;
    r2[r] = none;
    ri[r] = _mm512_set1_epi32(-1);
  }
  for (int64_t j = 0; j < nb; j += 16) {
    const __mmask16 valid = nb - j >= 16 ? static_cast<__mmask16>(0xffff)
                                         : static_cast<__mmask16>((1u << (nb - j)) - 1u);
    const __m512i cols = _mm512_add_epi32(step, _mm512_set1_epi32(static_cast<int32_t>(j)));
    __m512i b1 = _mm512_loadu_si512(c1 + j), b2 = _mm512_loadu_si512(c2 + j), bi = _mm512_loadu_si512(ci + j);
    for (int r = 0; r < R; ++r) {
      const __m256i lo = _mm512_cvtepi64_epi32(distances8(bt + j, ldb, x[r]));
      const __m256i hi = _mm512_cvtepi64_epi32(distances8(bt + j + 8, ldb, x[r]));
      const __m512i d = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      offer16(d, valid, cols, r1[r], r2[r], ri[r]);
      offer16(d, valid, _mm512_set1_epi32(static_cast<int32_t>(i0 + r)), b1, b2, bi);
    }
    _mm512_storeu_si512(c1 + j, b1);
    _mm512_storeu_si512(c2 + j, b2);
    _mm512_storeu_si512(ci + j, bi);
  }
  alignas(64) int32_t l1[16], l2[16], li[16];
  for (int r = 0; r < R; ++r) {
    _mm512_store_si512(l1, r1[r]);
    _mm512_store_si512(l2, r2[r]);
    _mm512_store_si512(li, ri[r]);
    fwd[i0 + r] = merge_lanes(l1, l2, li, 16);
  }
}

}  // namespace

#if defined(DUPSCOPE_HAMMING_VPOPCNT)
void best_two_avx512_vpopcnt(const uint64_t* a, int64_t na, const uint64_t* bt, int64_t nb,
                             int64_t ldb, Best2* fwd, Best2* back) {
#else
void best_two_avx512(const uint64_t* a, int64_t na, const uint64_t* bt, int64_t nb, int64_t ldb,
                     Best2* fwd, Best2* back) {
#endif
  // The columns' best two, as planes of ldb int32 (the padding lanes are never offered).
  std::vector<int32_t> c1(ldb, kNone), c2(ldb, kNone), ci(ldb, -1);
  int64_t i = 0;
  for (; i + kRows <= na; i += kRows) rows_against_columns<kRows>(a, i, bt, nb, ldb, c1.data(), c2.data(), ci.data(), fwd);
  for (; i < na; ++i) rows_against_columns<1>(a, i, bt, nb, ldb, c1.data(), c2.data(), ci.data(), fwd);
  for (int64_t j = 0; j < nb; ++j) back[j] = Best2{c1[j], c2[j], ci[j]};
}

#if defined(DUPSCOPE_HAMMING_VPOPCNT)
bool cpu_has_vpopcntdq() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vpopcntdq");
}
#endif

}  // namespace hamming_detail
}  // namespace dupscope
