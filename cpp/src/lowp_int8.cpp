// int8 rows, the scalar statement of the int8 tile products and the dispatch to the hardware
// kernels (lowp_avx512vnni.cpp, lowp_amx.cpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dupscope/lowp.hpp"

namespace dupscope {

#if !defined(DUPSCOPE_X86)
namespace lowp_detail {
bool cpu_has_vnni() { return false; }
void gemm_u8s8_vnni(const uint8_t*, int64_t, int64_t, int64_t, int32_t*, int64_t, const uint8_t*) {
  throw std::runtime_error("this build has no AVX512_VNNI kernel");
}
}  // namespace lowp_detail
#endif
#if !defined(DUPSCOPE_AMX)
namespace lowp_detail {
bool cpu_has_amx_int8() { return false; }
void gemm_u8s8_amx(const uint8_t*, int64_t, int64_t, int64_t, int32_t*, int64_t, const uint8_t*) {
  throw std::runtime_error("this build has no AMX kernel");
}
}  // namespace lowp_detail
#endif

bool int8_kernel_available(Int8Kernel kernel) {
  switch (kernel) {
    case Int8Kernel::Emulated: return true;
    case Int8Kernel::Vnni: return lowp_detail::cpu_has_vnni();
    case Int8Kernel::Amx: return lowp_detail::cpu_has_amx_int8();
  }
  return false;
}

Int8Kernel best_int8_kernel() {
  if (int8_kernel_available(Int8Kernel::Amx)) return Int8Kernel::Amx;
  return int8_kernel_available(Int8Kernel::Vnni) ? Int8Kernel::Vnni : Int8Kernel::Emulated;
}

std::vector<std::string> int8_kernels() {
  std::vector<std::string> out;
  const std::pair<Int8Kernel, const char*> names[] = {
      {Int8Kernel::Emulated, "int8-emulated"}, {Int8Kernel::Vnni, "int8-vnni"}, {Int8Kernel::Amx, "int8-amx"}};
  for (const auto& [kernel, name] : names)
    if (int8_kernel_available(kernel)) out.emplace_back(name);
  return out;
}

Int8Rows quantize_int8(const float* x, int64_t n, int64_t d, int64_t dq) {
  if (d > kInt8MaxDepth)
    throw std::invalid_argument("int8 tiles take rows of at most " + std::to_string(kInt8MaxDepth) +
                                " values, got " + std::to_string(d) + " (use bf16 or float32)");
  if (dq < d) throw std::invalid_argument("the int8 depth must hold the row");
  Int8Rows out;
  out.d = d;
  out.dq = dq;
  out.q.assign(static_cast<size_t>(n * dq), 0);
  out.u.assign(static_cast<size_t>(n * dq), 128);
  out.scale.assign(static_cast<size_t>(n), 0.0f);
  out.sum.assign(static_cast<size_t>(n), 0);
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float top = 0.0f;
    for (int64_t t = 0; t < d; ++t) top = std::max(top, std::fabs(xr[t]));
    const float s = top / 127.0f;
    if (!(s > 0.0f) || !std::isfinite(s)) continue;  // a zero (or broken) row keeps scale 0: products 0
    out.scale[r] = s;
    int32_t sum = 0;
    for (int64_t t = 0; t < d; ++t) {
      const double v = std::nearbyint(static_cast<double>(xr[t]) / static_cast<double>(s));
      const int q = static_cast<int>(std::clamp(v, -127.0, 127.0));
      out.q[r * dq + t] = static_cast<int8_t>(q);
      out.u[r * dq + t] = static_cast<uint8_t>(q + 128);
      sum += q;
    }
    out.sum[r] = sum;
  }
  return out;
}

void pack_int8(const Int8Rows& x, int64_t j0, int64_t n, uint8_t* pack) {
  constexpr int64_t NR = 32;
  const int64_t dq = x.dq, quads = dq / 4;
  for (int64_t s0 = 0; s0 < n; s0 += NR) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(pack + s0 * dq);
    for (int64_t j = 0; j < NR; ++j) {
      const int64_t col = s0 + j;
      for (int64_t p = 0; p < quads; ++p) {
        uint32_t v = 0;
        if (col < n) std::memcpy(&v, x.q.data() + (j0 + col) * dq + 4 * p, 4);
        dst[p * NR + j] = v;
      }
    }
  }
}

namespace {

// The one scaling every kernel's exact sum goes through, so that they all give the same bits.
inline float scaled(int32_t dot, float sa, float sb) { return static_cast<float>(dot) * sa * sb; }

}  // namespace

void gemm_int8(const Int8Rows& a, int64_t i0, int64_t m, const Int8Rows& b, int64_t j0, int64_t n, float* c,
               int64_t ldc, uint8_t* pack, Int8Kernel kernel, bool packed) {
  const int64_t dq = a.dq;
  if (b.dq != dq) throw std::invalid_argument("int8 rows of different depths");
  if (kernel == Int8Kernel::Amx && dq % 64) throw std::invalid_argument("the AMX kernel needs a depth that is a multiple of 64");
  if (dq % 4) throw std::invalid_argument("the int8 depth must be a multiple of 4");
  if (kernel == Int8Kernel::Emulated) {
    for (int64_t r = 0; r < m; ++r) {
      const int8_t* ar = a.q.data() + (i0 + r) * dq;
      for (int64_t s = 0; s < n; ++s) {
        const int8_t* bs = b.q.data() + (j0 + s) * dq;
        int32_t acc = 0;
        for (int64_t t = 0; t < dq; ++t) acc += static_cast<int32_t>(ar[t]) * static_cast<int32_t>(bs[t]);
        c[r * ldc + s] = scaled(acc, a.scale[i0 + r], b.scale[j0 + s]);
      }
    }
    return;
  }
  if (!packed) pack_int8(b, j0, n, pack);
  int32_t* ci = reinterpret_cast<int32_t*>(c);  // the raw sums, scaled in place below
  const uint8_t* au = a.u.data() + i0 * dq;
  if (kernel == Int8Kernel::Amx)
    lowp_detail::gemm_u8s8_amx(au, m, n, dq, ci, ldc, pack);
  else
    lowp_detail::gemm_u8s8_vnni(au, m, n, dq, ci, ldc, pack);
  // sum_t (q_a + 128) q_b = q_a . q_b + 128 sum(q_b): exact in int32 (at most 255 * 127 * 1024).
  for (int64_t r = 0; r < m; ++r) {
    const float sa = a.scale[i0 + r];
    int32_t* row = ci + r * ldc;
    float* out = c + r * ldc;
    for (int64_t s = 0; s < n; ++s) {
      const int32_t dot = row[s] - 128 * b.sum[j0 + s];
      out[s] = scaled(dot, sa, b.scale[j0 + s]);
    }
  }
}

double int8_rows_bound(const float* x, const Int8Rows& rows) {
  const int64_t n = static_cast<int64_t>(rows.scale.size()), d = rows.d, dq = rows.dq;
  double max_res = 0.0, max_q = 0.0, max_norm = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    const double s = rows.scale[i];
    double res = 0.0, qn = 0.0, norm = 0.0;
    for (int64_t t = 0; t < d; ++t) {
      const double r = s * static_cast<double>(rows.q[i * dq + t]);
      const double e = static_cast<double>(xi[t]) - r;
      res += e * e;
      qn += r * r;
      norm += static_cast<double>(xi[t]) * xi[t];
    }
    max_res = std::max(max_res, std::sqrt(res));
    max_q = std::max(max_q, std::sqrt(qn));
    max_norm = std::max(max_norm, std::sqrt(norm));
  }
  // The float32 kernel's own sums, and the scaling's two roundings of the int8 product.
  const double sums = static_cast<double>(d) * std::ldexp(1.0, -24) * max_norm * max_norm;
  const double scaling = 2.0 * std::ldexp(1.0, -24) * max_q * max_q;
  // 1.01: the double arithmetic above; plus float32 denormals the float32 kernel may flush.
  return (2.0 * max_q * max_res + max_res * max_res + sums + scaling) * 1.01 + static_cast<double>(d) * std::ldexp(1.0, -120);
}

}  // namespace dupscope
