// AMX-BF16 tile kernel: TDPBF16PS multiplies a 16 x 32 bf16 tile by a 32 x 16 one into 16 x 16
// float32 sums in one instruction, about five times the rate of VDPBF16PS on the same core. Each
// 32 x 32 block of the output keeps four accumulator tiles; per step of 32 depth elements it
// loads two tiles of rows of a (straight from a, stride dp) and two of packed columns. The pack
// is the AVX-512 kernel's (pack_bf16): per strip of 32 columns, pair p of column j at p * 32 + j,
// so 16 pairs of 16 columns are one tile with a row stride of 128 bytes. The depth must be a
// multiple of 32 (bf16_depth_for); rows past the last whole 16 go to the AVX-512 kernel.
//
// The AMX-INT8 kernel has the same shape with TDPBUSD (unsigned bytes of a times signed bytes of
// the packed columns, 16 x 64 by 64 x 16, exact int32 sums): pack_int8's strips hold byte quads
// where pack_bf16's hold pairs, so one tile step is 64 depth bytes (a multiple of 64,
// int8_depth_for); rows past the last whole 16 go to the AVX512_VNNI kernel.
//
// Linux grants a process the tile registers' state only on request (arch_prctl
// ARCH_REQ_XCOMP_PERM); the first check asks once and reports whether it was granted.
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "dupscope/lowp.hpp"

namespace dupscope {
namespace lowp_detail {

namespace {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

constexpr int NR = 32;  // columns per strip (pack_bf16)
constexpr int KS = 32;  // depth elements per tile step

bool request_tile_state() {
#if defined(__linux__)
  constexpr long kReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM
  constexpr long kXtileData = 18;         // XFEATURE_XTILEDATA
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#else
  return false;
#endif
}

// Tiles 0-3: accumulators (16 rows x 16 floats); 4, 5: rows of a (16 x 32 bf16); 6, 7: packed
// columns (16 pairs x 16 columns).
void configure() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

// A 32 x 32 block (two row tiles) or, with Two == false, a 16 x 32 one.
template <bool Two>
void block(const uint16_t* a, int64_t dp, const unsigned char* bp, float* c, int64_t ldc) {
  const int64_t a_stride = dp * 2, c_stride = ldc * 4;
  _tile_zero(0);
  _tile_zero(1);
  if (Two) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t k = 0; k < dp; k += KS) {
    const unsigned char* b = bp + (k / 2) * NR * 4;
    _tile_loadd(6, b, NR * 4);
    _tile_loadd(7, b + 64, NR * 4);
    _tile_loadd(4, a + k, a_stride);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (Two) {
      _tile_loadd(5, a + 16 * dp + k, a_stride);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, c_stride);
  _tile_stored(1, c + 16, c_stride);
  if (Two) {
    _tile_stored(2, c + 16 * ldc, c_stride);
    _tile_stored(3, c + 16 * ldc + 16, c_stride);
  }
}

// A 32 x 32 int8 block (two row tiles) or, with Two == false, a 16 x 32 one.
template <bool Two>
void block_int8(const uint8_t* a, int64_t dq, const unsigned char* bp, int32_t* c, int64_t ldc) {
  constexpr int64_t KB = 64;  // depth bytes per tile step
  const int64_t c_stride = ldc * 4;
  _tile_zero(0);
  _tile_zero(1);
  if (Two) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t k = 0; k < dq; k += KB) {
    const unsigned char* b = bp + (k / 4) * NR * 4;
    _tile_loadd(6, b, NR * 4);
    _tile_loadd(7, b + 64, NR * 4);
    _tile_loadd(4, a + k, dq);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    if (Two) {
      _tile_loadd(5, a + 16 * dq + k, dq);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  }
  _tile_stored(0, c, c_stride);
  _tile_stored(1, c + 16, c_stride);
  if (Two) {
    _tile_stored(2, c + 16 * ldc, c_stride);
    _tile_stored(3, c + 16 * ldc + 16, c_stride);
  }
}

// CPUID leaf 7, EDX: bit 24 AMX-TILE, bit 22 AMX-BF16, bit 25 AMX-INT8 (read directly: not every
// compiler that builds this file knows the names in __builtin_cpu_supports).
bool cpuid_amx(int feature_bit) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1u) && (d >> feature_bit & 1u);
}

bool tile_state_granted() {
  static const bool granted = request_tile_state();
  return granted;
}

}  // namespace

bool cpu_has_amx_bf16() { return cpuid_amx(22) && cpu_has_bf16() && tile_state_granted(); }

bool cpu_has_amx_int8() { return cpuid_amx(25) && cpu_has_vnni() && tile_state_granted(); }

void gemm_u8s8_amx(const uint8_t* a, int64_t m, int64_t n, int64_t dq, int32_t* c, int64_t ldc,
                   const uint8_t* pack) {
  const int64_t whole = m / 16 * 16;
  if (whole > 0) {
    configure();
    for (int64_t s0 = 0; s0 < n; s0 += NR) {
      const auto* bp = pack + s0 * dq;
      int64_t r = 0;
      for (; r + 32 <= whole; r += 32) block_int8<true>(a + r * dq, dq, bp, c + r * ldc + s0, ldc);
      if (r < whole) block_int8<false>(a + r * dq, dq, bp, c + r * ldc + s0, ldc);
    }
    _tile_release();
  }
  if (whole < m) gemm_u8s8_vnni(a + whole * dq, m - whole, n, dq, c + whole * ldc, ldc, pack);
}

void gemm_bf16_amx(const uint16_t* a, int64_t m, int64_t n, int64_t dp, float* c, int64_t ldc,
                   const uint16_t* pack) {
  const int64_t whole = m / 16 * 16;
  if (whole > 0) {
    configure();
    for (int64_t s0 = 0; s0 < n; s0 += NR) {
      const auto* bp = reinterpret_cast<const unsigned char*>(pack + s0 * dp);
      int64_t r = 0;
      for (; r + 32 <= whole; r += 32) block<true>(a + r * dp, dp, bp, c + r * ldc + s0, ldc);
      if (r < whole) block<false>(a + r * dp, dp, bp, c + r * ldc + s0, ldc);
    }
    _tile_release();
  }
  if (whole < m) gemm_bf16_avx512(a + whole * dp, m - whole, n, dp, c + whole * ldc, ldc, pack);
}

}  // namespace lowp_detail
}  // namespace dupscope
