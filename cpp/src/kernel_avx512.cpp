// AVX-512F kernel. A 12x32 micro-tile keeps 24 zmm accumulators, 2 for b and 1 broadcast: 27 of
// the 32 registers, enough independent FMAs to cover the FMA latency on one or two 512-bit
// ports. Conversion to float16 uses the AVX-512F form of vcvtps2ph (16 lanes).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "dupscope/kernels.hpp"

namespace dupscope {
namespace {

constexpr int MR = 12;
constexpr int NR = 32;
constexpr int KC = 192;

void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
  __m512 r[MR][2];
  for (int i = 0; i < MR; ++i) r[i][0] = r[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 x = _mm512_set1_ps(a[i]);
      r[i][0] = _mm512_fmadd_ps(x, b0, r[i][0]);
      r[i][1] = _mm512_fmadd_ps(x, b1, r[i][1]);
    }
    a += MR;
    b += NR;
  }
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (acc) {
      _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), r[i][0]));
      _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), r[i][1]));
    } else {
      _mm512_storeu_ps(ci, r[i][0]);
      _mm512_storeu_ps(ci + 16, r[i][1]);
    }
  }
}

// One register's operations, for the one-row micro-kernel (micro_row.inc).
struct Lanes {
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V fma(V x, V b, V r) { return _mm512_fmadd_ps(x, b, r); }
  static void store(float* c, V r, bool acc) { _mm512_storeu_ps(c, acc ? _mm512_add_ps(_mm512_loadu_ps(c), r) : r); }
};

#include "micro_row.inc"

void map_to_unit(float* c, int64_t n) {
  const __m512 half = _mm512_set1_ps(0.5f), zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  int64_t s = 0;
  for (; s + 16 <= n; s += 16) {
    __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(c + s), half, half);
    _mm512_storeu_ps(c + s, _mm512_min_ps(_mm512_max_ps(v, zero), one));
  }
  if (s < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - s)) - 1u);
    __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, c + s), half, half);
    _mm512_mask_storeu_ps(c + s, mask, _mm512_min_ps(_mm512_max_ps(v, zero), one));
  }
}

void to_half(const float* c, uint16_t* out, int64_t n) {
  int64_t s = 0;
  for (; s + 16 <= n; s += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + s),
                        _mm512_cvtps_ph(_mm512_loadu_ps(c + s),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  if (s < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - s)) - 1u);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(mask, c + s),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(out + s, mask, h);
  }
}

inline bool any16(const float* c, float rthr, const float* cthr) {
  const __m512 v = _mm512_loadu_ps(c);
  __mmask16 hit = _mm512_cmp_ps_mask(v, _mm512_set1_ps(rthr), _CMP_GE_OQ);
  if (cthr != nullptr) hit |= _mm512_cmp_ps_mask(v, _mm512_loadu_ps(cthr), _CMP_GE_OQ);
  return hit != 0;
}

// The positions base + t of c[t] >= rthr (or >= cthr[t]) in increasing order, compressed in a
// register and stored as one block of 16 (out needs room for 16); returns how many.
constexpr bool kCompressHits = true;
inline int compress16(const float* c, float rthr, const float* cthr, int32_t base, int32_t* out) {
  const __m512 v = _mm512_loadu_ps(c);
  __mmask16 hit = _mm512_cmp_ps_mask(v, _mm512_set1_ps(rthr), _CMP_GE_OQ);
  if (cthr != nullptr) hit |= _mm512_cmp_ps_mask(v, _mm512_loadu_ps(cthr), _CMP_GE_OQ);
  const __m512i pos = _mm512_add_epi32(_mm512_set1_epi32(base),
                                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  _mm512_storeu_si512(out, _mm512_maskz_compress_epi32(hit, pos));
  return __builtin_popcount(hit);
}

#include "avx2_shuffles.inc"
#include "tile_gemm.inc"

}  // namespace

const KernelSet& kernels_avx512() {
  static const KernelSet k{SimdLevel::AVX512, MR, NR, KC, &tile_gemm, &row_gemm, &tile_epilogue, &tile_scan,
                           &tile_transpose_half};
  return k;
}

}  // namespace dupscope
