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
