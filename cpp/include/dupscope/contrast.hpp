// Grey-level normalisation before keypoint detection: a global linear stretch (the 1st and 99th
// percentiles to 0 and 255), then contrast-limited adaptive histogram equalisation (CLAHE) on a
// grid of tiles, so that the corners of a picture do not depend on a bright overlay (watermark,
// border) elsewhere in the image or on its overall exposure.
#pragma once
#include <cstdint>

namespace dupscope {

struct ContrastConfig {
  float clip_limit = 3.0f;  // a tile's histogram bins are clipped at clip_limit x the mean bin
                            // (<= 0: the global stretch only)
  int tiles = 8;            // tiles per side (each at least one pixel; fewer on tiny images)
};

// Normalises the `width` x `height` grey image at `in` (rows `stride` bytes apart) into `out`
// (width x height, packed rows). Throws std::invalid_argument for a non-positive size or tile
// count. Deterministic: integer histograms, float32 interpolation weights.
void normalise_contrast(const uint8_t* in, int width, int height, int64_t stride, const ContrastConfig& config,
                        uint8_t* out);

}  // namespace dupscope
