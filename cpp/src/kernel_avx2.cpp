// AVX2 + FMA + F16C kernel. A 6x16 micro-tile keeps 12 ymm accumulators, 2 for b and 1 for the
// broadcast of a: 15 of the 16 registers, the classic shape for two FMA ports. F16C converts 8
// floats to float16 per instruction, with round-to-nearest-even like the portable path.
#include <immintrin.h>

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

// Packs 8 rows x kc columns into strip lanes with 8x8 register transposes: the packing of b
// is about a tenth of a tile's time when done one float at a time.
inline bool pack8(const float* src, int64_t d, int64_t kc, int R, float* p) {
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    __m256 r0 = _mm256_loadu_ps(src + 0 * d + k), r1 = _mm256_loadu_ps(src + 1 * d + k);
    __m256 r2 = _mm256_loadu_ps(src + 2 * d + k), r3 = _mm256_loadu_ps(src + 3 * d + k);
    __m256 r4 = _mm256_loadu_ps(src + 4 * d + k), r5 = _mm256_loadu_ps(src + 5 * d + k);
    __m256 r6 = _mm256_loadu_ps(src + 6 * d + k), r7 = _mm256_loadu_ps(src + 7 * d + k);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(p + (k + 0) * R, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(p + (k + 1) * R, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(p + (k + 2) * R, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(p + (k + 3) * R, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(p + (k + 4) * R, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(p + (k + 5) * R, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(p + (k + 6) * R, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(p + (k + 7) * R, _mm256_permute2f128_ps(u3, u7, 0x31));
  }
  for (; k < kc; ++k)
    for (int r = 0; r < 8; ++r) p[k * R + r] = src[r * d + k];
  return true;
}
// 8 x 8 transpose of float16 bit patterns in three rounds of unpacks (16-, 32-, 64-bit), for
// the mirrored half of an off-diagonal tile.
inline bool transpose8_half(const uint16_t* in, int64_t ldi, uint16_t* out, int64_t ldo) {
  __m128i a[8], b[8], c[8];
  for (int i = 0; i < 8; ++i) a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i * ldi));
  for (int i = 0; i < 4; ++i) {
    b[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
    b[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]);
  }
  c[0] = _mm_unpacklo_epi32(b[0], b[2]); c[1] = _mm_unpackhi_epi32(b[0], b[2]);
  c[2] = _mm_unpacklo_epi32(b[1], b[3]); c[3] = _mm_unpackhi_epi32(b[1], b[3]);
  c[4] = _mm_unpacklo_epi32(b[4], b[6]); c[5] = _mm_unpackhi_epi32(b[4], b[6]);
  c[6] = _mm_unpacklo_epi32(b[5], b[7]); c[7] = _mm_unpackhi_epi32(b[5], b[7]);
  for (int j = 0; j < 4; ++j) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (2 * j) * ldo),
                     _mm_unpacklo_epi64(c[j], c[j + 4]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (2 * j + 1) * ldo),
                     _mm_unpackhi_epi64(c[j], c[j + 4]));
  }
  return true;
}

#include "tile_gemm.inc"

}  // namespace

const KernelSet& kernels_avx2() {
  static const KernelSet k{SimdLevel::AVX2, MR, NR, KC, &tile_gemm, &tile_epilogue, &tile_scan};
  return k;
}

}  // namespace dupscope
