// Scalar stand-ins for exactly the AMX intrinsics cpp/src/lowp_amx.cpp uses, so that its tile
// configuration, loads, products and stores can be checked on CPUs without AMX
// (tests/test_kernel_emulated.py). The tile registers are modelled with the configured shape:
// a load, store or product outside that shape, or with no configuration loaded, aborts.
// Test-only: never part of the build.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace amx_emulation {
struct Tile {
  int rows = 0;
  int colsb = 0;
  unsigned char data[16][64];
};
inline bool configured = false;
inline Tile tiles[8];
inline int rows(int t) {
  if (!configured || t < 0 || t > 7 || tiles[t].rows == 0) abort();
  return tiles[t].rows;
}
inline float bf16(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  if ((h & 0x7F80u) == 0) h &= 0x8000u;  // denormals in as zero
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float flush(float f) { return std::fabs(f) < FLT_MIN ? std::copysign(0.0f, f) : f; }
}  // namespace amx_emulation

// Palette 1 only; 64 bytes: palette, start row, 14 reserved, 16 x colsb (uint16), 16 x rows.
inline void _tile_loadconfig(const void* p) {
  using namespace amx_emulation;
  const auto* c = static_cast<const unsigned char*>(p);
  if (c[0] != 1 || c[1] != 0) abort();
  for (int t = 0; t < 8; ++t) {
    uint16_t colsb;
    std::memcpy(&colsb, c + 16 + 2 * t, 2);
    const int r = c[48 + t];
    if (colsb > 64 || r > 16 || colsb % 4) abort();
    tiles[t].rows = r;
    tiles[t].colsb = colsb;
    std::memset(tiles[t].data, 0xA5, sizeof tiles[t].data);  // undefined until written
  }
  configured = true;
}
inline void _tile_release() {
  amx_emulation::configured = false;
  for (auto& t : amx_emulation::tiles) t.rows = t.colsb = 0;
}
inline void _tile_zero(int t) {
  amx_emulation::rows(t);
  std::memset(amx_emulation::tiles[t].data, 0, sizeof amx_emulation::tiles[t].data);
}
inline void _tile_loadd(int t, const void* base, long stride) {
  using namespace amx_emulation;
  const int r = rows(t);
  for (int i = 0; i < r; ++i)
    std::memcpy(tiles[t].data[i], static_cast<const unsigned char*>(base) + i * stride, tiles[t].colsb);
}
inline void _tile_stored(int t, void* base, long stride) {
  using namespace amx_emulation;
  const int r = rows(t);
  for (int i = 0; i < r; ++i)
    std::memcpy(static_cast<unsigned char*>(base) + i * stride, tiles[t].data[i], tiles[t].colsb);
}
// TDPBF16PS as the SDM states it: dst.row[m].fp32[n] += a.row[m].bf16[2k] * b.row[k].bf16[2n]
// + a.row[m].bf16[2k + 1] * b.row[k].bf16[2n + 1], over k < a.colsb / 4; shapes must agree.
inline void _tile_dpbf16ps(int dst, int a, int b) {
  using namespace amx_emulation;
  const int m_rows = rows(dst), k_pairs = tiles[a].colsb / 4, n_cols = tiles[dst].colsb / 4;
  if (rows(a) != m_rows || rows(b) != k_pairs || tiles[b].colsb != tiles[dst].colsb) abort();
  for (int m = 0; m < m_rows; ++m)
    for (int n = 0; n < n_cols; ++n) {
      float acc;
      std::memcpy(&acc, tiles[dst].data[m] + 4 * n, 4);
      for (int k = 0; k < k_pairs; ++k) {
        acc = flush(std::fma(bf16(tiles[a].data[m] + 4 * k), bf16(tiles[b].data[k] + 4 * n), acc));
        acc = flush(std::fma(bf16(tiles[a].data[m] + 4 * k + 2), bf16(tiles[b].data[k] + 4 * n + 2), acc));
      }
      std::memcpy(tiles[dst].data[m] + 4 * n, &acc, 4);
    }
}
// TDPBUSD as the SDM states it: dst.row[m].int32[n] += sum over k < a.colsb / 4 and i < 4 of
// a.row[m].uint8[4k + i] * b.row[k].int8[4n + i] (wrapping int32 sums); shapes must agree.
inline void _tile_dpbusd(int dst, int a, int b) {
  using namespace amx_emulation;
  const int m_rows = rows(dst), k_quads = tiles[a].colsb / 4, n_cols = tiles[dst].colsb / 4;
  if (rows(a) != m_rows || rows(b) != k_quads || tiles[b].colsb != tiles[dst].colsb) abort();
  for (int m = 0; m < m_rows; ++m)
    for (int n = 0; n < n_cols; ++n) {
      int32_t acc;
      std::memcpy(&acc, tiles[dst].data[m] + 4 * n, 4);
      for (int k = 0; k < k_quads; ++k)
        for (int i = 0; i < 4; ++i)
          acc += static_cast<int32_t>(tiles[a].data[m][4 * k + i]) *
                 static_cast<int32_t>(static_cast<int8_t>(tiles[b].data[k][4 * n + i]));
      std::memcpy(tiles[dst].data[m] + 4 * n, &acc, 4);
    }
}
