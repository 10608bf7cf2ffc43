// Low-precision tile products for the neighbour search's candidate pass.
//
// With Precision::Bf16 the engine computes its tiles from bf16 copies of the normalised rows
// (VDPBF16PS: two bf16 products per 32-bit lane, accumulated in float32; or AMX's TDPBF16PS,
// a 16 x 32 by 32 x 16 tile product per instruction, where the CPU and the OS allow it). Each row keeps its k
// best raw bf16 products and, beside them, its near misses: every product it saw within
// bf16_margin of its k-th best of the moment. These candidates are re-ranked with the float32
// kernel's own products. The bf16 error of a product of unit vectors is bounded
// (bf16_error_bound), so no column left out can reach the float32 top k; a row whose near
// misses did not fit is searched again in float32. The lists equal the float32 path's whatever
// the data.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dupscope {

enum class Precision { Fp32, Bf16, Int8 };

// Which kernel computes bf16 tiles: the scalar statement of VDPBF16PS (always available, the
// reference for the tests), the AVX512_BF16 kernel, or the AMX-BF16 one.
enum class Bf16Kernel { Emulated, Avx512, Amx };

// "bf16-emulated" (always), "bf16-avx512" (compiled, and the CPU has AVX512_BF16) and "bf16-amx"
// (compiled, the CPU has AMX-BF16 and the OS granted this process the tile state).
std::vector<std::string> lowp_kernels();
bool bf16_hardware();
bool amx_bf16_usable();
// The fastest hardware kernel this CPU runs (Amx, else Avx512), or Emulated where there is none.
Bf16Kernel best_bf16_kernel();
// Whether `kernel` can run here.
bool bf16_kernel_available(Bf16Kernel kernel);

// Elements per bf16 row: d rounded up to even (pairs), zero padded.
inline int64_t bf16_depth(int64_t d) { return (d + 1) / 2 * 2; }
// The row length a kernel needs: the AMX kernel steps through the depth 32 elements at a time,
// the others by pairs. Padding with zeros changes no product.
inline int64_t bf16_depth_for(int64_t d, Bf16Kernel kernel) {
  return kernel == Bf16Kernel::Amx ? (d + 31) / 32 * 32 : bf16_depth(d);
}
// Rounds n rows of d floats to bf16 (round to nearest even; float32 denormals become zero, as
// VCVTNE2PS2BF16 does) into rows of dp >= d elements (default bf16_depth(d)), zero padded.
void to_bf16(const float* x, int64_t n, int64_t d, uint16_t* out, int64_t dp = -1);

// Elements of the pack buffer gemm_bf16 needs for n columns of depth dp.
inline int64_t bf16_pack_elems(int64_t n, int64_t dp) { return (n + 31) / 32 * 32 * dp; }
// c[r * ldc + s] = products of bf16 rows a_r and b_s (depth dp, even), accumulated in float32 in
// the instruction's order: per pair p, the odd element's product added first, then the even
// one's, with denormals flushed. ldc >= n rounded up to 32; c needs m rounded up to 12 rows.
// `kernel` picks the kernel (a hardware one must be available). The AVX512_BF16 kernel gives the
// emulation's bits; the AMX kernel (dp a multiple of 32) may round its sums in another order,
// within the same bound (bf16_error_bound: float32 sums of d exact products, in any order).
// With `packed`, `pack` already holds b's columns in the kernel's layout (pack_bf16, from this
// tile's first column, a multiple of 32 in the whole matrix) and is not written.
void gemm_bf16(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t dp, float* c, int64_t ldc,
               uint16_t* pack, Bf16Kernel kernel, bool packed = false);
// b's n rows (depth dp) in the hardware kernels' layout: strips of 32 columns of bf16 pairs,
// bf16_pack_elems(n, dp) elements (zero past n).
void pack_bf16(const uint16_t* b, int64_t n, int64_t dp, uint16_t* pack);

// Largest difference, in cosine units, between gemm_bf16's product of two unit vectors of depth
// d and the float32 kernel's: bf16 rounding of both inputs (2u + u^2 with u = 2^-8) and the
// float32 sums of both (d * 2^-24 each), with a margin.
double bf16_error_bound(int64_t d);
// The same bound for products between the n rows of x (row stride d) in particular, by
// Cauchy-Schwarz on the rows' actual bf16 rounding residuals: a.b - â.b̂ = â.δb + δa.b̂ + δa.δb,
// so with R the largest residual norm |δa| and A the largest bf16 row norm |â|, the bf16
// product is within 2AR + R² of the exact one, plus both float32 sums' d 2^-24 |a||b|. Random
// rows round to about 0.6 of the worst case; never more than bf16_error_bound(d).
double bf16_rows_bound(const float* x, int64_t n, int64_t d);
// The near-miss margin of the candidate pass, in raw product (cosine) units, for an error
// bound: twice it, so a column left out is worth less in float32 than each of the k best bf16
// columns, plus 1e-6 so that the gap survives the float32 map to [0, 1] (a difference of more
// than 2^-22 stays a strict one), rounded up to float.
float bf16_margin(double bound);

namespace lowp_detail {
void gemm_bf16_avx512(const uint16_t* a, int64_t m, int64_t n, int64_t dp, float* c, int64_t ldc,
                      const uint16_t* pack);
bool cpu_has_bf16();
void gemm_bf16_amx(const uint16_t* a, int64_t m, int64_t n, int64_t dp, float* c, int64_t ldc,
                   const uint16_t* pack);
bool cpu_has_amx_bf16();  // and the OS granted the tile state (asked once)
// The int8 kernels' raw sums: c (as int32) = sum over the depth of a's unsigned bytes times the
// packed columns' signed ones (VPDPBUSD's and TDPBUSD's operation).
void gemm_u8s8_vnni(const uint8_t* a, int64_t m, int64_t n, int64_t dq, int32_t* c, int64_t ldc, const uint8_t* pack);
bool cpu_has_vnni();
void gemm_u8s8_amx(const uint8_t* a, int64_t m, int64_t n, int64_t dq, int32_t* c, int64_t ldc, const uint8_t* pack);
bool cpu_has_amx_int8();  // and the OS granted the tile state (asked once)
}  // namespace lowp_detail

// ---- int8 tiles -------------------------------------------------------------------------------
//
// With Precision::Int8 each normalised row x is stored as q = round(x / s) in int8 with its own
// scale s = max|x| / 127, and a tile's product of rows a and b is s_a s_b (q_a . q_b), the dot
// product summed exactly in int32 (VPDPBUSD on AVX512_VNNI, four byte products per 32-bit lane;
// or AMX's TDPBUSD, a 16 x 64 by 64 x 16 byte tile product per instruction). Both instructions
// multiply unsigned bytes by signed ones, so the rows' side is stored as q + 128 and the
// columns' sum of q, times 128, is taken off again: the sums are exact, so every kernel gives
// the emulation's bits. The engine does not keep near misses for int8 (its error bound is about
// six times bf16's, and the near misses would grow with it): each value that an int8 tile lets
// through is computed again at once with the float32 kernel, from the tile's own rows, and only
// float32 values enter the lists (see SimilarityJob::offer_int8_tile).

enum class Int8Kernel { Emulated, Vnni, Amx };
// "int8-emulated" (always), "int8-vnni" (compiled, and the CPU has AVX512_VNNI) and "int8-amx"
// (compiled, the CPU has AMX-INT8 and the OS granted this process the tile state).
std::vector<std::string> int8_kernels();
bool int8_kernel_available(Int8Kernel kernel);
// The fastest kernel this CPU runs (Amx, else Vnni), or Emulated where there is none.
Int8Kernel best_int8_kernel();

// The widest row the int8 path takes: q_a . q_b stays below 2^24 in magnitude (127^2 d), so its
// conversion to float32 is exact.
constexpr int64_t kInt8MaxDepth = 1024;
// Bytes per int8 row: d rounded up to 4 (one VPDPBUSD group), or to 64 for the AMX kernel (one
// tile row), zero padded.
inline int64_t int8_depth_for(int64_t d, Int8Kernel kernel) {
  return kernel == Int8Kernel::Amx ? (d + 63) / 64 * 64 : (d + 3) / 4 * 4;
}

// n rows quantised for the int8 tiles: q (signed, the emulation's and the packed columns'),
// u = q + 128 (the rows' side of the hardware kernels), each row's scale and sum of q.
struct Int8Rows {
  int64_t d = 0, dq = 0;
  std::vector<int8_t> q;
  std::vector<uint8_t> u;
  std::vector<float> scale;
  std::vector<int32_t> sum;
};
// Quantises n rows of d floats into rows of dq >= d bytes (d > kInt8MaxDepth: invalid_argument).
Int8Rows quantize_int8(const float* x, int64_t n, int64_t d, int64_t dq);

// Bytes of the pack buffer gemm_int8 needs for n columns of depth dq.
inline int64_t int8_pack_bytes(int64_t n, int64_t dq) { return (n + 31) / 32 * 32 * dq; }
// Columns [j0, j0 + n) of `x` in the hardware kernels' layout: strips of 32 columns of byte
// quads (quad p of column j at 32-bit word p * 32 + j, pack_bf16's layout for 4-byte groups).
void pack_int8(const Int8Rows& x, int64_t j0, int64_t n, uint8_t* pack);
// c[r * ldc + s] = products of rows i0 + r of `a` and j0 + s of `b` (both quantised with the same
// dq): float(q_a . q_b) * s_a * s_b, in float32 (two roundings). ldc >= n rounded up to 32; c
// needs m rounded up to 16 rows. `kernel` must be available here (int8_kernel_available). With
// `packed`, `pack` holds b's columns from j0 (pack_int8, j0 a multiple of 32 in it) and is not
// written.
void gemm_int8(const Int8Rows& a, int64_t i0, int64_t m, const Int8Rows& b, int64_t j0, int64_t n, float* c,
               int64_t ldc, uint8_t* pack, Int8Kernel kernel, bool packed = false);
// Largest difference, in cosine units, between gemm_int8's product of two of the rows x (row
// stride rows.d), quantised as `rows`, and the float32 kernel's: a.b - â.b̂ = â.δb + δa.b̂ + δa.δb with â = s_a q_a, so with R the largest
// residual norm and A the largest quantised norm the products differ by at most 2AR + R², plus
// the float32 sums of the float32 kernel (d 2^-24 |a||b|) and the two roundings of the scaling.
double int8_rows_bound(const float* x, const Int8Rows& rows);

}  // namespace dupscope
