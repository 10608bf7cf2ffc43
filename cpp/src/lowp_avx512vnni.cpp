// AVX512_VNNI int8 tile kernel: VPDPBUSD multiplies four unsigned bytes of a by four signed
// bytes of b per 32-bit lane and adds the four products to an int32 accumulator. A 12 x 32
// micro-tile keeps 24 zmm accumulators; b is packed per strip of 32 columns as byte quads
// (pack_int8: lane j holds column j's bytes 4p to 4p + 3); a's quad is one 32-bit broadcast from
// its row (q + 128). The sums are exact, so the order does not matter.
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
void micro(const uint8_t* a, int64_t dq, const uint8_t* bp, int32_t* c, int64_t ldc) {
  __m512i acc[R][2];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
  const int64_t quads = dq / 4;
  for (int64_t p = 0; p < quads; ++p) {
    const __m512i b0 = _mm512_loadu_si512(bp + p * 4 * NR);
    const __m512i b1 = _mm512_loadu_si512(bp + p * 4 * NR + 64);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      uint32_t v;
      std::memcpy(&v, a + i * dq + 4 * p, 4);
      const __m512i x = _mm512_set1_epi32(static_cast<int>(v));
      acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], x, b0);
      acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], x, b1);
    }
  }
  for (int i = 0; i < R; ++i) {
    _mm512_storeu_si512(c + i * ldc, acc[i][0]);
    _mm512_storeu_si512(c + i * ldc + 16, acc[i][1]);
  }
}

}  // namespace

bool cpu_has_vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512f");
}

void gemm_u8s8_vnni(const uint8_t* a, int64_t m, int64_t n, int64_t dq, int32_t* c, int64_t ldc,
                    const uint8_t* pack) {
  using Fn = void (*)(const uint8_t*, int64_t, const uint8_t*, int32_t*, int64_t);
  // The rows left after the whole micro-tiles, one micro-kernel per count (no padded rows computed).
  static constexpr Fn rest[MR] = {nullptr,   &micro<1>, &micro<2>, &micro<3>, &micro<4>,  &micro<5>,
                                  &micro<6>, &micro<7>, &micro<8>, &micro<9>, &micro<10>, &micro<11>};
  for (int64_t s0 = 0; s0 < n; s0 += NR) {
    const uint8_t* bp = pack + s0 * dq;
    int64_t r = 0;
    for (; r + MR <= m; r += MR) micro<MR>(a + r * dq, dq, bp, c + r * ldc + s0, ldc);
    if (r < m) rest[m - r](a + r * dq, dq, bp, c + r * ldc + s0, ldc);
  }
}

}  // namespace lowp_detail
}  // namespace dupscope
