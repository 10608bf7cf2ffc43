// Low-precision tile products for the neighbour search's candidate pass.
//
// With Precision::Bf16 the engine computes its tiles from bf16 copies of the normalised rows
// (VDPBF16PS: two bf16 products per 32-bit lane, accumulated in float32). Each row keeps its k
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

// "bf16-emulated" (always: a scalar statement of the instruction, the reference for the tests)
// and "bf16" (compiled, and the CPU has AVX512_BF16).
std::vector<std::string> lowp_kernels();
bool bf16_hardware();

// Elements per bf16 row: d rounded up to even (pairs), zero padded.
inline int64_t bf16_depth(int64_t d) { return (d + 1) / 2 * 2; }
// Rounds n rows of d floats to bf16 (round to nearest even; float32 denormals become zero, as
// VCVTNE2PS2BF16 does) into rows of bf16_depth(d) elements.
void to_bf16(const float* x, int64_t n, int64_t d, uint16_t* out);

// Elements of the pack buffer gemm_bf16 needs for n columns of depth dp.
inline int64_t bf16_pack_elems(int64_t n, int64_t dp) { return (n + 31) / 32 * 32 * dp; }
// c[r * ldc + s] = products of bf16 rows a_r and b_s (depth dp, even), accumulated in float32 in
// the instruction's order: per pair p, the odd element's product added first, then the even
// one's, with denormals flushed. ldc >= n rounded up to 32; c needs m rounded up to 12 rows.
// `hardware` picks the AVX512_BF16 kernel (which must be available) or the emulation; both give
// the same bits.
// With `packed`, `pack` already holds b's columns in the kernel's layout (pack_bf16, from this
// tile's first column, a multiple of 32 in the whole matrix) and is not written.
void gemm_bf16(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t dp, float* c, int64_t ldc,
               uint16_t* pack, bool hardware, bool packed = false);
// b's n rows (depth dp) in the hardware kernel's layout: strips of 32 columns of bf16 pairs,
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
}  // namespace lowp_detail

}  // namespace dupscope
