// Oriented binary features of a grey image for the geometric verification of candidate pairs:
// FAST-9 corners on a scale pyramid, ranked by the Harris measure, oriented by their intensity
// centroid and described by 256 intensity comparisons of a box-smoothed image (the scheme ORB
// made known), with one difference that matters here: the comparison pattern is closed under a
// vertical flip, so the descriptors of the mirror image come from the direct ones by a fixed bit
// permutation (mirror_descriptors) instead of a second pass over the pixels.
#pragma once
#include <cstdint>
#include <vector>

namespace dupscope {

struct KeypointConfig {
  int features = 1000;       // most keypoints over all levels (the strongest per level)
  int levels = 5;            // pyramid levels
  float scale = 1.4f;        // size ratio of two consecutive levels
  int fast_threshold = 10;   // grey-level difference a FAST circle pixel needs from the centre
  bool portable = false;     // the scalar corner test and orientation instead of the SSE2 ones
                             // (the same results; for tests)
};

struct Keypoints {
  std::vector<float> points;          // K x 2: x, y in the input image's pixel coordinates
  std::vector<uint8_t> descriptors;   // K x 32
  std::vector<float> response;        // K: Harris measure at the keypoint's level
  std::vector<int32_t> level;         // K: pyramid level
  int64_t size() const { return static_cast<int64_t>(response.size()); }
};

// Keypoints of the `width` x `height` grey image at `grey` (rows `stride` bytes apart), in a
// deterministic order (level, then decreasing response). Images too small for a level simply
// give no keypoints there. Throws std::invalid_argument for a non-positive size or a bad config.
void detect_and_describe(const uint8_t* grey, int width, int height, int64_t stride,
                         const KeypointConfig& config, Keypoints& out);

// "sse2" where the corner test and the orientation run on SSE2 (x86-64), else "portable".
const char* keypoint_kernel();

// Descriptors (n x 32) of the same keypoints in the mirror image (x -> width - 1 - x): every
// comparison of the pattern has its vertically flipped twin in the neighbouring bit, and a mirror
// turns a keypoint's orientation t into 180 degrees - t, which maps each comparison onto its twin.
void mirror_descriptors(const uint8_t* in, int64_t n, uint8_t* out);

}  // namespace dupscope
