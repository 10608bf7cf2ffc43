// Portable kernel: plain C++ the compiler may vectorise for the baseline instruction set (SSE2
// on x86-64, NEON on arm64). It is the reference for the SIMD kernels and the fallback on CPUs
// without AVX2.
#include <algorithm>
#include <cstdint>

#include "dupscope/half.hpp"
#include "dupscope/kernels.hpp"

namespace dupscope {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;
constexpr int KC = 256;

void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
  float t[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) t[i][j] = acc ? c[i * ldc + j] : 0.0f;
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i) {
      const float ai = a[k * MR + i];
      for (int j = 0; j < NR; ++j) t[i][j] += ai * b[k * NR + j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = t[i][j];
}

void micro_row(int64_t kc, const float* a, const float* b, int64_t strips, float* c, bool acc) {
  for (int64_t s = 0; s < strips; ++s) {
    const float* p = b + s * kc * NR;
    float t[NR];
    for (int j = 0; j < NR; ++j) t[j] = acc ? c[s * NR + j] : 0.0f;
    for (int64_t k = 0; k < kc; ++k) {
      const float ak = a[k];
      for (int j = 0; j < NR; ++j) t[j] += ak * p[k * NR + j];
    }
    for (int j = 0; j < NR; ++j) c[s * NR + j] = t[j];
  }
}

void map_to_unit(float* c, int64_t n) {
  for (int64_t s = 0; s < n; ++s) {
    float v = 0.5f * c[s] + 0.5f;
    v = v < 0.0f ? 0.0f : v;
    c[s] = v > 1.0f ? 1.0f : v;
  }
}

void to_half(const float* c, uint16_t* out, int64_t n) {
  for (int64_t s = 0; s < n; ++s) out[s] = float_to_half(c[s]);
}

inline bool any16(const float* c, float rthr, const float* cthr) {
  for (int t = 0; t < 16; ++t)
    if (c[t] >= rthr || (cthr != nullptr && c[t] >= cthr[t])) return true;
  return false;
}

inline bool pack8(const float*, int64_t, int64_t, int, float*) { return false; }
inline bool transpose8_half(const uint16_t*, int64_t, uint16_t*, int64_t) { return false; }

constexpr bool kCompressHits = false;  // tile_scan walks the blocks any16 flags
inline int compress16(const float*, float, const float*, int32_t, int32_t*) { return 0; }

#include "tile_gemm.inc"

}  // namespace

const KernelSet& kernels_portable() {
  static const KernelSet k{SimdLevel::Portable, MR, NR, KC, &tile_gemm, &row_gemm, &tile_epilogue, &tile_scan,
                           &tile_transpose_half};
  return k;
}

}  // namespace dupscope
