// L2 normalisation of the input embeddings, done once before the tiles.
#pragma once
#include <cstdint>

namespace dupscope {

// Writes the L2-normalised rows of `in` (n x d, row stride in_stride elements) into `out`
// (n x d, contiguous float32). Norms accumulate in double. A row of zeros stays zero, so its
// cosine with anything is 0 (similarity 0.5) rather than NaN. Returns the index of the first
// row holding NaN or infinity, or -1 when every value is finite.
int64_t normalize_rows(const float* in, int64_t n, int64_t d, int64_t in_stride, float* out);
int64_t normalize_rows(const uint16_t* in_half, int64_t n, int64_t d, int64_t in_stride,
                       float* out);

}  // namespace dupscope
