// AVX512_VNNI int8 tile kernel: VPDPBUSD multiplies four unsigned bytes of a by four signed
// bytes of b per 32-bit lane and adds the four products to an int32 accumulator. The tile loop
// is lowp_micro.inc's; b is packed as byte quads (pack_int8), a's rows are q + 128. The sums are
// exact, so the order does not matter.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "dupscope/lowp.hpp"

namespace dupscope {
namespace lowp_detail {

namespace {

struct Ops {
  using Elem = uint8_t;
  using Vec = __m512i;
  using Out = int32_t;
  static constexpr int kGroup = 4;
  static Vec zero() { return _mm512_setzero_si512(); }
  static Vec dot(Vec acc, __m512i a, __m512i b) { return _mm512_dpbusd_epi32(acc, a, b); }
  static void store(Out* c, Vec v) { _mm512_storeu_si512(c, v); }
};

#include "lowp_micro.inc"

}  // namespace

bool cpu_has_vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512f");
}

void gemm_u8s8_vnni(const uint8_t* a, int64_t m, int64_t n, int64_t dq, int32_t* c, int64_t ldc,
                    const uint8_t* pack) {
  strips(a, m, n, dq, c, ldc, pack);
}

}  // namespace lowp_detail
}  // namespace dupscope
