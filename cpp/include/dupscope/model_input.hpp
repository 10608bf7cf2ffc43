// A batch of uint8 images turned into a model's float32 input tensor in one pass.
#pragma once
#include <cstdint>

namespace dupscope {

// out = the `count` images (each h x w x channels uint8, contiguous), every value v of channel c
// mapped to float(v) * scale[c] - shift[c] (two float32 roundings, as numpy computes
// `x.astype(float32) * scale - shift`: the 256 results per channel are looked up), laid out
// (count, channels, h, w) when `nchw`, else (count, h, w, channels).
void model_input(const uint8_t* const* images, int64_t count, int64_t h, int64_t w, int64_t channels,
                 const float* scale, const float* shift, bool nchw, float* out);

}  // namespace dupscope
