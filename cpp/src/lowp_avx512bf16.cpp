// AVX512_BF16 tile kernel: VDPBF16PS multiplies two bf16 pairs per 32-bit lane and adds both
// products to a float32 accumulator, twice the multiply rate of the float32 FMA kernel. A 12x32
// micro-tile keeps 24 zmm accumulators; b is packed per strip of 32 columns as bf16 pairs
// (lane j holds column j's elements 2p and 2p+1); a's pair is one 32-bit broadcast from its
// row. The whole depth is summed in registers, in the order the emulation states.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "dupscope/lowp.hpp"

namespace dupscope {
namespace lowp_detail {

namespace {

constexpr int MR = 12;
constexpr int NR = 32;

template <int R>
void micro(const uint16_t* a, int64_t dp, const uint16_t* bp, float* c, int64_t ldc) {
  __m512 acc[R][2];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  const int64_t pairs = dp / 2;
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * 2 * NR);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * 2 * NR + 32);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      uint32_t v;
      std::memcpy(&v, a + i * dp + 2 * p, 4);
      const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(v));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], x, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], x, b1);
    }
  }
  for (int i = 0; i < R; ++i) {
    _mm512_storeu_ps(c + i * ldc, acc[i][0]);
    _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
  }
}

}  // namespace

bool cpu_has_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
}

void gemm_bf16_avx512(const uint16_t* a, int64_t m, int64_t n, int64_t dp, float* c, int64_t ldc,
                      const uint16_t* pack) {
  for (int64_t s0 = 0; s0 < n; s0 += NR) {
    const uint16_t* bp = pack + s0 * dp;
    int64_t r = 0;
    for (; r + MR <= m; r += MR) micro<MR>(a + r * dp, dp, bp, c + r * ldc + s0, ldc);
    switch (m - r) {  // the rows left, one micro-kernel per count (no padded rows computed)
      case 11: micro<11>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 10: micro<10>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 9: micro<9>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 8: micro<8>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 7: micro<7>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 6: micro<6>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 5: micro<5>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 4: micro<4>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 3: micro<3>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 2: micro<2>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      case 1: micro<1>(a + r * dp, dp, bp, c + r * ldc + s0, ldc); break;
      default: break;
    }
  }
}

}  // namespace lowp_detail
}  // namespace dupscope
