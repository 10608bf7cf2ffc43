// Scalar stand-ins for exactly the AVX-512 intrinsics cpp/src/kernel_avx512.cpp uses, so that
// its packing, micro-kernel, masked tails and epilogue can be checked on CPUs without AVX-512
// (tests/test_kernel_emulated.py). Test-only: never part of the build.
#pragma once
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include "dupscope/half.hpp"
struct __m512 { float v[16]; };
struct __m256i { uint16_t v[16]; };
typedef uint16_t __mmask16;
#define _MM_FROUND_TO_NEAREST_INT 0
#define _MM_FROUND_NO_EXC 8
#define _CMP_GE_OQ 29
inline __m512 _mm512_setzero_ps() { __m512 r; for (auto& x : r.v) x = 0; return r; }
inline __m512 _mm512_load_ps(const float* p) { if ((uintptr_t)p % 64) abort(); __m512 r; std::memcpy(r.v, p, 64); return r; }
inline __m512 _mm512_loadu_ps(const float* p) { __m512 r; std::memcpy(r.v, p, 64); return r; }
inline void _mm512_storeu_ps(float* p, __m512 a) { std::memcpy(p, a.v, 64); }
inline __m512 _mm512_set1_ps(float f) { __m512 r; for (auto& x : r.v) x = f; return r; }
inline __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c) { for (int i = 0; i < 16; ++i) c.v[i] = __builtin_fmaf(a.v[i], b.v[i], c.v[i]); return c; }
inline __m512 _mm512_add_ps(__m512 a, __m512 b) { for (int i = 0; i < 16; ++i) a.v[i] += b.v[i]; return a; }
inline __m512 _mm512_min_ps(__m512 a, __m512 b) { for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return a; }
inline __m512 _mm512_max_ps(__m512 a, __m512 b) { for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i]; return a; }
inline __m512 _mm512_maskz_loadu_ps(__mmask16 m, const float* p) { __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = (m >> i & 1) ? p[i] : 0.f; return r; }
inline void _mm512_mask_storeu_ps(float* p, __mmask16 m, __m512 a) { for (int i = 0; i < 16; ++i) if (m >> i & 1) p[i] = a.v[i]; }
inline __m256i _mm512_cvtps_ph(__m512 a, int) { __m256i r; for (int i = 0; i < 16; ++i) r.v[i] = dupscope::float_to_half(a.v[i]); return r; }
inline void _mm256_storeu_si256(__m256i* p, __m256i a) { std::memcpy(p, a.v, 32); }
inline void _mm256_mask_storeu_epi16(void* p, __mmask16 m, __m256i a) { for (int i = 0; i < 16; ++i) if (m >> i & 1) ((uint16_t*)p)[i] = a.v[i]; }
inline __mmask16 _mm512_cmp_ps_mask(__m512 a, __m512 b, int op) { if (op != _CMP_GE_OQ) abort(); __mmask16 m = 0; for (int i = 0; i < 16; ++i) if (a.v[i] >= b.v[i]) m |= (__mmask16)(1u << i); return m; }
// 32-bit integer lanes, for the top-k filter's compressed hit positions.
struct __m512i { int32_t v[16]; };
inline __m512i _mm512_set1_epi32(int32_t x) { __m512i r; for (auto& y : r.v) y = x; return r; }
inline __m512i _mm512_setr_epi32(int32_t a0, int32_t a1, int32_t a2, int32_t a3, int32_t a4, int32_t a5, int32_t a6, int32_t a7,
                                 int32_t a8, int32_t a9, int32_t a10, int32_t a11, int32_t a12, int32_t a13, int32_t a14, int32_t a15) {
  return __m512i{{a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15}};
}
inline __m512i _mm512_add_epi32(__m512i a, __m512i b) { for (int i = 0; i < 16; ++i) a.v[i] += b.v[i]; return a; }
// Selected lanes packed to the bottom in order, the rest zero.
inline __m512i _mm512_maskz_compress_epi32(__mmask16 m, __m512i a) { __m512i r{}; int w = 0; for (int i = 0; i < 16; ++i) if (m >> i & 1) r.v[w++] = a.v[i]; return r; }
inline void _mm512_storeu_si512(void* p, __m512i a) { std::memcpy(p, a.v, 64); }
inline __m512i _mm512_setzero_si512() { return __m512i{}; }
inline __m512i _mm512_loadu_si512(const void* p) { __m512i r; std::memcpy(r.v, p, 64); return r; }
// VPDPBUSD: each lane adds the four products of a's unsigned bytes and b's signed ones.
inline __m512i _mm512_dpbusd_epi32(__m512i src, __m512i a, __m512i b) {
  for (int i = 0; i < 16; ++i) {
    uint8_t ua[4];
    int8_t sb[4];
    std::memcpy(ua, &a.v[i], 4);
    std::memcpy(sb, &b.v[i], 4);
    for (int t = 0; t < 4; ++t) src.v[i] += static_cast<int32_t>(ua[t]) * static_cast<int32_t>(sb[t]);
  }
  return src;
}
// The AVX2/SSE2 shuffles of cpp/src/avx2_shuffles.inc (pack8, transpose8_half), which the AVX-512
// kernel shares with the AVX2 one.
struct __m256 { float v[8]; };
struct __m128i { uint16_t v[8]; };
inline __m256 _mm256_loadu_ps(const float* p) { __m256 r; std::memcpy(r.v, p, 32); return r; }
inline void _mm256_storeu_ps(float* p, __m256 a) { std::memcpy(p, a.v, 32); }
// Per 128-bit lane L: unpacklo (a0 b0 a1 b1), unpackhi (a2 b2 a3 b3).
inline __m256 _mm256_unpacklo_ps(__m256 a, __m256 b) { __m256 r; for (int L = 0; L < 8; L += 4) { r.v[L] = a.v[L]; r.v[L + 1] = b.v[L]; r.v[L + 2] = a.v[L + 1]; r.v[L + 3] = b.v[L + 1]; } return r; }
inline __m256 _mm256_unpackhi_ps(__m256 a, __m256 b) { __m256 r; for (int L = 0; L < 8; L += 4) { r.v[L] = a.v[L + 2]; r.v[L + 1] = b.v[L + 2]; r.v[L + 2] = a.v[L + 3]; r.v[L + 3] = b.v[L + 3]; } return r; }
inline __m256 _mm256_shuffle_ps(__m256 a, __m256 b, int imm) { __m256 r; for (int L = 0; L < 8; L += 4) { r.v[L] = a.v[L + (imm & 3)]; r.v[L + 1] = a.v[L + (imm >> 2 & 3)]; r.v[L + 2] = b.v[L + (imm >> 4 & 3)]; r.v[L + 3] = b.v[L + (imm >> 6 & 3)]; } return r; }
inline __m256 _mm256_permute2f128_ps(__m256 a, __m256 b, int imm) { __m256 r; for (int h = 0; h < 2; ++h) { const int sel = imm >> (4 * h) & 3; const float* src = sel < 2 ? a.v + 4 * sel : b.v + 4 * (sel - 2); for (int i = 0; i < 4; ++i) r.v[4 * h + i] = (imm >> (4 * h + 3) & 1) ? 0.f : src[i]; } return r; }
inline __m128i _mm_loadu_si128(const __m128i* p) { __m128i r; std::memcpy(r.v, p, 16); return r; }
inline void _mm_storeu_si128(__m128i* p, __m128i a) { std::memcpy(p, a.v, 16); }
template <int W> inline __m128i unpack_(__m128i a, __m128i b, bool hi) { __m128i r; const int n = 8 / W; for (int i = 0; i < n / 2; ++i) for (int w = 0; w < W; ++w) { r.v[(2 * i) * W + w] = a.v[(i + (hi ? n / 2 : 0)) * W + w]; r.v[(2 * i + 1) * W + w] = b.v[(i + (hi ? n / 2 : 0)) * W + w]; } return r; }
inline __m128i _mm_unpacklo_epi16(__m128i a, __m128i b) { return unpack_<1>(a, b, false); }
inline __m128i _mm_unpackhi_epi16(__m128i a, __m128i b) { return unpack_<1>(a, b, true); }
inline __m128i _mm_unpacklo_epi32(__m128i a, __m128i b) { return unpack_<2>(a, b, false); }
inline __m128i _mm_unpackhi_epi32(__m128i a, __m128i b) { return unpack_<2>(a, b, true); }
inline __m128i _mm_unpacklo_epi64(__m128i a, __m128i b) { return unpack_<4>(a, b, false); }
inline __m128i _mm_unpackhi_epi64(__m128i a, __m128i b) { return unpack_<4>(a, b, true); }
