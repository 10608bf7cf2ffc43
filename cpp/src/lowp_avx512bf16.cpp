// AVX512_BF16 tile kernel: VDPBF16PS multiplies two bf16 pairs per 32-bit lane and adds both
// products to a float32 accumulator, twice the multiply rate of the float32 FMA kernel. The
// tile loop is lowp_micro.inc's; b is packed as bf16 pairs (pack_bf16). The whole depth is
// summed in registers, in the order the emulation states.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "dupscope/lowp.hpp"

namespace dupscope {
namespace lowp_detail {

namespace {

struct Ops {
  using Elem = uint16_t;
  using Vec = __m512;
  using Out = float;
  static constexpr int kGroup = 2;
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec dot(Vec acc, __m512i a, __m512i b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
  static void store(Out* c, Vec v) { _mm512_storeu_ps(c, v); }
};

#include "lowp_micro.inc"

}  // namespace

bool cpu_has_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
}

void gemm_bf16_avx512(const uint16_t* a, int64_t m, int64_t n, int64_t dp, float* c, int64_t ldc,
                      const uint16_t* pack) {
  strips(a, m, n, dp, c, ldc, pack);
}

}  // namespace lowp_detail
}  // namespace dupscope
