// The per-instruction-set tile kernels.
//
// A tile is the block of similarities between rows [i0, i0+m) and [j0, j0+n) of the normalised
// embedding matrix. Each kernel set provides:
//   gemm:     c[r * ldc + s] = dot(a_r, b_s) in float32 (a, b row-major with row stride d).
//   row_gemm: the same for a single row a, bit for bit what gemm gives with m = 1, without the
//             micro-tile's other MR - 1 rows (zeros) being multiplied too.
//   epilogue: maps c to the [0, 1] similarity (1 + c) / 2, clamps, writes it back into c (float32,
//             for top-k) and as float16 into out (row-major, stride ldo) and, when out_t is not
//             null, transposed into out_t (stride ldo_t). Rows/columns whose valid flag is 0
//             become NaN; when diag is true the tile sits on the diagonal and (r, r) becomes 1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "dupscope/cpu_features.hpp"

namespace dupscope {

struct TileWorkspace {
  float* a_pack = nullptr;  // a_pack_floats(): all of a's rows packed, 64-byte aligned
  float* b_pack = nullptr;  // b_pack_floats(): one depth block of b packed
  bool a_ready = false;     // a_pack already holds the current a (same row block as before)
  float* c = nullptr;       // at least c_floats(tile) floats
  int64_t ldc = 0;          // row stride of c, set by the kernel's padded_cols(n)
  uint16_t* b16 = nullptr;  // bf16 tiles (Precision::Bf16): bf16_pack_elems(tile, depth)
  uint8_t* b8 = nullptr;    // int8 tiles (Precision::Int8): int8_pack_bytes(tile, depth)
};

// A 64-byte aligned float buffer (the kernels' packed operands and tiles load it aligned).
struct AlignedFloats {
  float* p = nullptr;
  explicit AlignedFloats(int64_t count) {
    const size_t bytes = static_cast<size_t>((count * 4 + 63) / 64 * 64);
    p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (p == nullptr) throw std::bad_alloc();
  }
  ~AlignedFloats() { std::free(p); }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
};

struct KernelSet {
  SimdLevel level;
  int mr, nr;  // micro-tile shape (rows of a, rows of b)
  int kc;      // depth of one packed block
  void (*gemm)(const float* a, int64_t m, const float* b, int64_t n, int64_t d, TileWorkspace& ws);
  void (*row_gemm)(const float* a, const float* b, int64_t n, int64_t d, TileWorkspace& ws);
  void (*epilogue)(float* c, int64_t ldc, int64_t m, int64_t n, const uint8_t* row_valid,
                   const uint8_t* col_valid, bool diag, uint16_t* out, int64_t ldo,
                   uint16_t* out_t, int64_t ldo_t);
  // Positions of a tile row worth offering to the top-k: c[s] >= rthr, or c[s] >= cthr[s]
  // (cthr may be null), in order into hits (room for n); returns the count.
  int64_t (*scan)(const float* c, int64_t n, float rthr, const float* cthr, int32_t* hits);
  // out_t[s * ldo_t + r] = in[r * ldi + s] for m x n float16 values: the epilogue's mirrored half,
  // also used where the device made the tile's float16 values.
  void (*transpose)(const uint16_t* in, int64_t ldi, int64_t m, int64_t n, uint16_t* out_t, int64_t ldo_t);
};

const KernelSet& kernels_portable();
#if defined(DUPSCOPE_X86)
const KernelSet& kernels_avx2();
const KernelSet& kernels_avx512();
#endif
const KernelSet& kernels_for(SimdLevel level);

// Workspace sizes (in floats) for a tile of up to `tile` rows of depth d with kernel set `k`.
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t a_pack_floats(const KernelSet& k, int64_t tile, int64_t d) {
  return round_up(tile, k.mr) * d;
}
inline int64_t b_pack_floats(const KernelSet& k, int64_t tile) {
  return round_up(tile, k.nr) * k.kc;
}
inline int64_t c_floats(const KernelSet& k, int64_t tile) {
  return round_up(tile, k.mr) * round_up(tile, k.nr);
}

}  // namespace dupscope
