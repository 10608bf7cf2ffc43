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

enum class Precision { Fp32, Bf16 };

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
}  // namespace lowp_detail

}  // namespace dupscope
