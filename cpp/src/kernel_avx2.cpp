// AVX2 + FMA + F16C kernel. A 6x16 micro-tile keeps 12 ymm accumulators, 2 for b and 1 for the
// broadcast of a: 15 of the 16 registers, the classic shape for two FMA ports. F16C converts 8
// floats to float16 per instruction, with round-to-nearest-even like the portable path.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "dupscope/kernels.hpp"

namespace dupscope {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int KC = 256;

void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40);
    c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50);
    c51 = _mm256_fmadd_ps(x, b1, c51);
    a += MR;
    b += NR;
  }
  const __m256 r[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                           {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (acc) {
      _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), r[i][0]));
      _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), r[i][1]));
    } else {
      _mm256_storeu_ps(ci, r[i][0]);
      _mm256_storeu_ps(ci + 8, r[i][1]);
    }
  }
}

// One register's operations, for the one-row micro-kernel (micro_row.inc).
struct Lanes {
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float f) { return _mm256_broadcast_ss(&f); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V fma(V x, V b, V r) { return _mm256_fmadd_ps(x, b, r); }
  static void store(float* c, V r, bool acc) { _mm256_storeu_ps(c, acc ? _mm256_add_ps(_mm256_loadu_ps(c), r) : r); }
};

#include "micro_row.inc"

void map_to_unit(float* c, int64_t n) {
  const __m256 half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  int64_t s = 0;
  for (; s + 8 <= n; s += 8) {
    __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(c + s), half, half);
    _mm256_storeu_ps(c + s, _mm256_min_ps(_mm256_max_ps(v, zero), one));
  }
  for (; s < n; ++s) {
    float v = 0.5f * c[s] + 0.5f;
    v = v < 0.0f ? 0.0f : v;
    c[s] = v > 1.0f ? 1.0f : v;
  }
}

void to_half(const float* c, uint16_t* out, int64_t n) {
  int64_t s = 0;
  for (; s + 8 <= n; s += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + s),
                     _mm256_cvtps_ph(_mm256_loadu_ps(c + s), _MM_FROUND_TO_NEAREST_INT));
  }
  if (s < n) {  // tail through a padded register so rounding matches the vector part exactly
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    alignas(16) uint16_t h[8];
    for (int64_t t = s; t < n; ++t) buf[t - s] = c[t];
    _mm_store_si128(reinterpret_cast<__m128i*>(h),
                    _mm256_cvtps_ph(_mm256_load_ps(buf), _MM_FROUND_TO_NEAREST_INT));
    for (int64_t t = s; t < n; ++t) out[t] = h[t - s];
  }
}

inline bool any16(const float* c, float rthr, const float* cthr) {
  const __m256 r = _mm256_set1_ps(rthr);
  const __m256 v0 = _mm256_loadu_ps(c), v1 = _mm256_loadu_ps(c + 8);
  __m256 hit = _mm256_or_ps(_mm256_cmp_ps(v0, r, _CMP_GE_OQ), _mm256_cmp_ps(v1, r, _CMP_GE_OQ));
  if (cthr != nullptr)
    hit = _mm256_or_ps(hit, _mm256_or_ps(_mm256_cmp_ps(v0, _mm256_loadu_ps(cthr), _CMP_GE_OQ),
                                         _mm256_cmp_ps(v1, _mm256_loadu_ps(cthr + 8), _CMP_GE_OQ)));
  return _mm256_movemask_ps(hit) != 0;
}

#include "avx2_shuffles.inc"
constexpr bool kCompressHits = false;  // tile_scan walks the blocks any16 flags
inline int compress16(const float*, float, const float*, int32_t, int32_t*) { return 0; }

#include "tile_gemm.inc"

}  // namespace

const KernelSet& kernels_avx2() {
  static const KernelSet k{SimdLevel::AVX2, MR, NR, KC, &tile_gemm, &row_gemm, &tile_epilogue, &tile_scan,
                           &tile_transpose_half};
  return k;
}

}  // namespace dupscope
