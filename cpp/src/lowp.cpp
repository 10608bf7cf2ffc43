// bf16 conversion, the scalar emulation of VDPBF16PS tiles, and the dispatch to the hardware
// kernel (lowp_avx512bf16.cpp).
#include "dupscope/lowp.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

namespace dupscope {

namespace {

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float bf16_value(uint16_t h) {
  // The instruction treats bf16 denormals as zero.
  if ((h & 0x7F80u) == 0) return from_bits(static_cast<uint32_t>(h & 0x8000u) << 16);
  return from_bits(static_cast<uint32_t>(h) << 16);
}
inline float flush(float f) { return std::fabs(f) < FLT_MIN ? std::copysign(0.0f, f) : f; }

uint16_t to_bf16_one(float f) {
  const uint32_t u = bits(f);
  if ((u & 0x7F800000u) == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);  // zero, denormal
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);  // nearest, ties to even
}

void gemm_bf16_emulated(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t dp, float* c,
                        int64_t ldc) {
  for (int64_t r = 0; r < m; ++r) {
    const uint16_t* ar = a + r * dp;
    for (int64_t s = 0; s < n; ++s) {
      const uint16_t* bs = b + s * dp;
      float acc = 0.0f;
      for (int64_t p = 0; p < dp; p += 2) {
        // Each step a float32 FMA with denormals in as zero and out flushed, as the SDM states.
        acc = flush(std::fma(bf16_value(ar[p + 1]), bf16_value(bs[p + 1]), acc));
        acc = flush(std::fma(bf16_value(ar[p]), bf16_value(bs[p]), acc));
      }
      c[r * ldc + s] = acc;
    }
  }
}

}  // namespace

#if !defined(DUPSCOPE_X86)
namespace lowp_detail {
bool cpu_has_bf16() { return false; }
void gemm_bf16_avx512(const uint16_t*, int64_t, int64_t, int64_t, float*, int64_t, const uint16_t*) {
  throw std::runtime_error("this build has no AVX512_BF16 kernel");
}
}  // namespace lowp_detail
#endif
#if !defined(DUPSCOPE_AMX)
namespace lowp_detail {
bool cpu_has_amx_bf16() { return false; }
void gemm_bf16_amx(const uint16_t*, int64_t, int64_t, int64_t, float*, int64_t, const uint16_t*) {
  throw std::runtime_error("this build has no AMX kernel");
}
}  // namespace lowp_detail
#endif

bool bf16_hardware() { return lowp_detail::cpu_has_bf16(); }
bool amx_bf16_usable() { return lowp_detail::cpu_has_amx_bf16(); }

Bf16Kernel best_bf16_kernel() {
  if (amx_bf16_usable()) return Bf16Kernel::Amx;
  return bf16_hardware() ? Bf16Kernel::Avx512 : Bf16Kernel::Emulated;
}

bool bf16_kernel_available(Bf16Kernel kernel) {
  switch (kernel) {
    case Bf16Kernel::Emulated: return true;
    case Bf16Kernel::Avx512: return bf16_hardware();
    case Bf16Kernel::Amx: return amx_bf16_usable();
  }
  return false;
}

std::vector<std::string> lowp_kernels() {
  std::vector<std::string> out;
  const std::pair<Bf16Kernel, const char*> names[] = {
      {Bf16Kernel::Emulated, "bf16-emulated"}, {Bf16Kernel::Avx512, "bf16-avx512"}, {Bf16Kernel::Amx, "bf16-amx"}};
  for (const auto& [kernel, name] : names)
    if (bf16_kernel_available(kernel)) out.emplace_back(name);
  return out;
}

void to_bf16(const float* x, int64_t n, int64_t d, uint16_t* out, int64_t dp) {
  if (dp < 0) dp = bf16_depth(d);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t k = 0; k < d; ++k) out[r * dp + k] = to_bf16_one(x[r * d + k]);
    for (int64_t k = d; k < dp; ++k) out[r * dp + k] = 0;
  }
}

void pack_bf16(const uint16_t* b, int64_t n, int64_t dp, uint16_t* pack) {
  constexpr int64_t NR = 32;
  const int64_t pairs = dp / 2;
  for (int64_t s0 = 0; s0 < n; s0 += NR) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(pack + s0 * dp);
    for (int64_t j = 0; j < NR; ++j) {
      const int64_t col = s0 + j;
      for (int64_t p = 0; p < pairs; ++p) {
        uint32_t v = 0;
        if (col < n) std::memcpy(&v, b + col * dp + 2 * p, 4);
        dst[p * NR + j] = v;
      }
    }
  }
}

void gemm_bf16(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t dp, float* c, int64_t ldc,
               uint16_t* pack, Bf16Kernel kernel, bool packed) {
  if (dp % 2) throw std::invalid_argument("bf16 depth must be even");
  if (kernel == Bf16Kernel::Amx && dp % 32) throw std::invalid_argument("the AMX kernel needs a depth that is a multiple of 32");
  if (kernel == Bf16Kernel::Emulated) {
    gemm_bf16_emulated(a, m, b, n, dp, c, ldc);
    return;
  }
  if (!packed) pack_bf16(b, n, dp, pack);
  if (kernel == Bf16Kernel::Amx)
    lowp_detail::gemm_bf16_amx(a, m, n, dp, c, ldc, pack);
  else
    lowp_detail::gemm_bf16_avx512(a, m, n, dp, c, ldc, pack);
}

double bf16_error_bound(int64_t d) {
  const double u = std::ldexp(1.0, -8);
  // Norms of the normalised rows are 1 within a few float32 ulps: 1.001 covers them.
  return ((2 * u + u * u) * 1.001 * 1.001 + 2.0 * static_cast<double>(d) * std::ldexp(1.0, -24)) * 1.01;
}

double bf16_rows_bound(const float* x, int64_t n, int64_t d) {
  const int64_t dp = bf16_depth(d);
  std::vector<uint16_t> row(static_cast<size_t>(dp));
  double max_res = 0.0, max_b16 = 0.0, max_norm = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    to_bf16(xi, 1, d, row.data());
    double res = 0.0, b16 = 0.0, norm = 0.0;
    for (int64_t t = 0; t < d; ++t) {
      uint32_t bits = static_cast<uint32_t>(row[t]) << 16;
      float r;
      std::memcpy(&r, &bits, sizeof r);
      const double e = static_cast<double>(xi[t]) - static_cast<double>(r);
      res += e * e;
      b16 += static_cast<double>(r) * r;
      norm += static_cast<double>(xi[t]) * xi[t];
    }
    max_res = std::max(max_res, std::sqrt(res));
    max_b16 = std::max(max_b16, std::sqrt(b16));
    max_norm = std::max(max_norm, std::sqrt(norm));
  }
  const double sums = static_cast<double>(d) * std::ldexp(1.0, -24) * (max_b16 * max_b16 + max_norm * max_norm);
  // 1.01: the double arithmetic above, and products flushed as denormals (each below 2^-126).
  const double bound = (2.0 * max_b16 * max_res + max_res * max_res + sums) * 1.01 + static_cast<double>(d) * std::ldexp(1.0, -120);
  return std::min(bound, bf16_error_bound(d));
}

float bf16_margin(double bound) {
  const double m = 2.0 * bound + 1e-6;
  float f = static_cast<float>(m);
  if (static_cast<double>(f) < m) f = std::nextafter(f, 1.0f);
  return f;
}

}  // namespace dupscope
