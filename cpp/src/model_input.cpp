// The model's input tensor from decoded images (see model_input.hpp). Compiled without FMA, so
// each table entry is the product rounded, then the difference rounded, as in numpy.
#include "dupscope/model_input.hpp"

#include <stdexcept>
#include <vector>

namespace dupscope {

void model_input(const uint8_t* const* images, int64_t count, int64_t h, int64_t w, int64_t channels,
                 const float* scale, const float* shift, bool nchw, float* out) {
  if (count < 0 || h < 1 || w < 1 || channels < 1) throw std::invalid_argument("image size must be positive");
  std::vector<float> table(static_cast<size_t>(channels) * 256);
  for (int64_t c = 0; c < channels; ++c) {
    for (int v = 0; v < 256; ++v) {
      volatile float product = static_cast<float>(v) * scale[c];  // rounded on its own, never fused
      table[static_cast<size_t>(c) * 256 + v] = product - shift[c];
    }
  }
  const int64_t plane = h * w, size = plane * channels;
  for (int64_t b = 0; b < count; ++b) {
    const uint8_t* px = images[b];
    float* o = out + b * size;
    if (!nchw || channels == 1) {
      for (int64_t i = 0; i < size; ++i) o[i] = table[static_cast<size_t>(i % channels) * 256 + px[i]];
      continue;
    }
    if (channels == 3) {
      const float *t0 = table.data(), *t1 = t0 + 256, *t2 = t1 + 256;
      float *o0 = o, *o1 = o + plane, *o2 = o + 2 * plane;
      for (int64_t p = 0; p < plane; ++p) {
        o0[p] = t0[px[3 * p]];
        o1[p] = t1[px[3 * p + 1]];
        o2[p] = t2[px[3 * p + 2]];
      }
      continue;
    }
    for (int64_t p = 0; p < plane; ++p)
      for (int64_t c = 0; c < channels; ++c) o[c * plane + p] = table[static_cast<size_t>(c) * 256 + px[p * channels + c]];
  }
}

}  // namespace dupscope
