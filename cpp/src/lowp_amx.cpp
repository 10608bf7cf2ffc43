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

// A 32 x 32 block (two row tiles) or, with Two == false, a 16 x 32 one, of bf16 products
// (TDPBF16PS) or, with Int8, of byte products (TDPBUSD). Both step through the depth 64 bytes at
// a time (32 bf16 or 64 bytes); `row_bytes` is a's row stride and depth in bytes, and the pack's
// 32-bit groups (pairs or quads) are 4 bytes either way.
template <bool Two, bool Int8>
void block(const unsigned char* a, int64_t row_bytes, const unsigned char* bp, void* c, int64_t ldc) {
  constexpr int64_t KB = 64;
  const int64_t c_stride = ldc * 4;
  auto* out = static_cast<unsigned char*>(c);
  _tile_zero(0);
  _tile_zero(1);
  if (Two) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t k = 0; k < row_bytes; k += KB) {
    const unsigned char* b = bp + (k / 4) * NR * 4;
    _tile_loadd(6, b, NR * 4);
    _tile_loadd(7, b + 64, NR * 4);
    _tile_loadd(4, a + k, row_bytes);
    if constexpr (Int8) {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (Two) {
      _tile_loadd(5, a + 16 * row_bytes + k, row_bytes);
      if constexpr (Int8) {
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
      } else {
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
  _tile_stored(0, out, c_stride);
  _tile_stored(1, out + 64, c_stride);
  if (Two) {
    _tile_stored(2, out + 16 * c_stride, c_stride);
    _tile_stored(3, out + 16 * c_stride + 64, c_stride);
  }
}

// The whole 16-row groups of m rows of a (row_bytes each) against n packed columns; returns how
// many rows it did, for the caller's vector kernel to finish.
template <bool Int8>
int64_t gemm_tiles(const unsigned char* a, int64_t m, int64_t n, int64_t row_bytes, void* c, int64_t ldc,
                   const unsigned char* pack) {
  const int64_t whole = m / 16 * 16;
  if (whole == 0) return 0;
  configure();
  auto* out = static_cast<unsigned char*>(c);
  for (int64_t s0 = 0; s0 < n; s0 += NR) {
    const unsigned char* bp = pack + s0 * row_bytes;
    int64_t r = 0;
    for (; r + 32 <= whole; r += 32)
      block<true, Int8>(a + r * row_bytes, row_bytes, bp, out + (r * ldc + s0) * 4, ldc);
    if (r < whole) block<false, Int8>(a + r * row_bytes, row_bytes, bp, out + (r * ldc + s0) * 4, ldc);
  }
  _tile_release();
  return whole;
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
  const int64_t whole = gemm_tiles<true>(a, m, n, dq, c, ldc, pack);
  if (whole < m) gemm_u8s8_vnni(a + whole * dq, m - whole, n, dq, c + whole * ldc, ldc, pack);
}

void gemm_bf16_amx(const uint16_t* a, int64_t m, int64_t n, int64_t dp, float* c, int64_t ldc,
                   const uint16_t* pack) {
  const int64_t whole = gemm_tiles<false>(reinterpret_cast<const unsigned char*>(a), m, n, dp * 2, c, ldc,
                                          reinterpret_cast<const unsigned char*>(pack));
  if (whole < m) gemm_bf16_avx512(a + whole * dp, m - whole, n, dp, c + whole * ldc, ldc, pack);
}

}  // namespace lowp_detail
}  // namespace dupscope
