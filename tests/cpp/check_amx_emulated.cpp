// Runs the AMX-BF16 kernel (cpp/src/lowp_amx.cpp compiled against
// tests/cpp/emulated_amx/immintrin.h) through gemm_bf16 on awkward shapes, with a poisoned
// output, and compares every product with the scalar VDPBF16PS emulation (within the float32
// rounding of sums in another order) and with a double-precision sum of the bf16 inputs.
// Then the AMX-INT8 kernel (the same file) and the AVX512_VNNI one (cpp/src/lowp_avx512vnni.cpp
// compiled against tests/cpp/emulated_avx512/immintrin.h) through gemm_int8, on awkward shapes
// with a poisoned output: their sums are exact, so every product must equal the scalar
// emulation's bits, and the emulation must equal a double-precision sum of the int8 rows.
// Exit status 0 when everything matches.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "dupscope/lowp.hpp"

namespace dupscope::lowp_detail {
bool cpu_has_bf16() { return false; }
// Stand-in for the AVX512_BF16 kernel, which takes the rows past the last whole 16: reads the
// pack as pack_bf16 documents it (pair p of column s0 + j at s0 * dp + 2 * (p * 32 + j)).
void gemm_bf16_avx512(const uint16_t* a, int64_t m, int64_t n, int64_t dp, float* c, int64_t ldc,
                      const uint16_t* pack) {
  auto value = [](uint16_t h) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  for (int64_t r = 0; r < m; ++r)
    for (int64_t s = 0; s < n; ++s) {
      const uint16_t* strip = pack + (s / 32 * 32) * dp;
      double acc = 0;
      for (int64_t p = 0; p < dp / 2; ++p)
        for (int h = 0; h < 2; ++h)
          acc += static_cast<double>(value(a[r * dp + 2 * p + h])) * value(strip[2 * (p * 32 + s % 32) + h]);
      c[r * ldc + s] = static_cast<float>(acc);
    }
}
}  // namespace dupscope::lowp_detail

using namespace dupscope;

int check_int8() {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd;
  int cases = 0;
  for (int64_t m : {1, 11, 15, 16, 17, 31, 32, 33, 100})
    for (int64_t n : {1, 17, 31, 32, 33, 100})
      for (int64_t d : {1, 3, 5, 63, 64, 65, 320}) {
        std::vector<float> af(m * d), bf(n * d);
        for (auto& x : af) x = nd(rng);
        for (auto& x : bf) x = nd(rng);
        const int64_t ldc = (n + 31) / 32 * 32, rows = (m + 15) / 16 * 16;
        for (Int8Kernel kernel : {Int8Kernel::Vnni, Int8Kernel::Amx}) {
          const int64_t dq = int8_depth_for(d, kernel);
          const Int8Rows a = quantize_int8(af.data(), m, d, dq), b = quantize_int8(bf.data(), n, d, dq);
          std::vector<uint8_t> pack(int8_pack_bytes(n, dq));
          std::vector<float> c(rows * ldc, NAN), ref(rows * ldc, NAN);
          gemm_int8(a, 0, m, b, 0, n, c.data(), ldc, pack.data(), kernel);
          gemm_int8(a, 0, m, b, 0, n, ref.data(), ldc, nullptr, Int8Kernel::Emulated);
          for (int64_t r = 0; r < m; ++r)
            for (int64_t s = 0; s < n; ++s) {
              double exact = 0;
              for (int64_t k = 0; k < d; ++k) exact += static_cast<double>(a.q[r * dq + k]) * b.q[s * dq + k];
              exact *= static_cast<double>(a.scale[r]) * b.scale[s];
              const float got = c[r * ldc + s], want = ref[r * ldc + s];
              uint32_t ug, uw;
              std::memcpy(&ug, &got, 4);
              std::memcpy(&uw, &want, 4);
              // float(dot) exact, then two float32 roundings of the scaling.
              if (ug != uw || std::fabs(want - exact) > 3.0 * std::ldexp(1.0, -24) * std::fabs(exact) + 1e-30) {
                std::printf("int8 mismatch (%s) m%ld n%ld d%ld at %ld,%ld: kernel %.9g emulated %.9g exact %.9g\n",
                            kernel == Int8Kernel::Amx ? "amx" : "vnni", (long)m, (long)n, (long)d, (long)r, (long)s, got,
                            want, exact);
                return 1;
              }
            }
          ++cases;
        }
      }
  std::printf("int8: %d cases, every product the emulation's bits\n", cases);
  return 0;
}

int main() {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  int cases = 0;
  double worst = 0;
  for (int64_t m : {1, 15, 16, 17, 31, 32, 33, 48, 100})
    for (int64_t n : {1, 17, 31, 32, 33, 64, 100})
      for (int64_t d : {1, 2, 31, 32, 33, 64, 100, 320}) {
        const int64_t dp = bf16_depth_for(d, Bf16Kernel::Amx);
        std::vector<float> af(m * d), bf(n * d);
        for (auto& x : af) x = nd(rng);
        for (auto& x : bf) x = nd(rng);
        std::vector<uint16_t> a(m * dp), b(n * dp), pack(bf16_pack_elems(n, dp));
        to_bf16(af.data(), m, d, a.data(), dp);
        to_bf16(bf.data(), n, d, b.data(), dp);
        const int64_t ldc = (n + 31) / 32 * 32, rows = (m + 11) / 12 * 12 + 16;
        std::vector<float> c(rows * ldc, NAN), ref(rows * ldc, NAN);
        gemm_bf16(a.data(), m, b.data(), n, dp, c.data(), ldc, pack.data(), Bf16Kernel::Amx);
        gemm_bf16(a.data(), m, b.data(), n, dp, ref.data(), ldc, nullptr, Bf16Kernel::Emulated);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t s = 0; s < n; ++s) {
            double exact = 0, mag = 0;
            for (int64_t k = 0; k < dp; ++k) {
              uint32_t ua = static_cast<uint32_t>(a[r * dp + k]) << 16, ub = static_cast<uint32_t>(b[s * dp + k]) << 16;
              float x, y;
              std::memcpy(&x, &ua, 4);
              std::memcpy(&y, &ub, 4);
              exact += static_cast<double>(x) * y;
              mag += std::fabs(static_cast<double>(x) * y);
            }
            // Two float32 sums of the same exact products, in any order: each within d ulps of mag.
            const double tol = 2.0 * static_cast<double>(dp) * std::ldexp(1.0, -24) * mag + 1e-30;
            const float got = c[r * ldc + s];
            if (!std::isfinite(got) || std::fabs(got - exact) > tol || std::fabs(got - ref[r * ldc + s]) > 2 * tol) {
              std::printf("mismatch m%ld n%ld d%ld at %ld,%ld: amx %.9g emulated %.9g exact %.9g\n", (long)m, (long)n,
                          (long)d, (long)r, (long)s, got, ref[r * ldc + s], exact);
              return 1;
            }
            worst = std::fmax(worst, std::fabs(got - exact) / (mag + 1e-30));
          }
        ++cases;
      }
  std::printf("%d cases, worst error %.2e of the products' magnitude\n", cases, worst);
  return check_int8();
}
