// Duplicate groups that need agreement (the delete list's rule), for dupscope.export and the
// explorer: no two different pictures are chained into one group through a look-alike.
#pragma once
#include <cstdint>
#include <vector>

namespace dupscope {

// Groups of n images from P scored pairs (a[p], b[p], score[p]; each pair once, a != b):
// pairs scoring at least `threshold` whose `skip[p]` is 0 (skip may be null) are links.
// Images are visited by their number of links (most first), then their best link's score
// (highest first), then their row. An image not yet in a group becomes the representative of a
// new one and offers membership to its linked images not yet in a group, from the highest score
// down (ties: the lower row); each joins only if it is linked to every member but the
// representative already in (it is linked to that one by construction). A group needs 2 members.
// Returns per image the representative's row, or -1 for images in no group. Time is linear in
// the links plus sorting the images that have one; memory a few arrays of n and of the links.
std::vector<int32_t> star_groups(int64_t n, const int32_t* a, const int32_t* b, const float* score,
                                 int64_t pairs, float threshold, const uint8_t* skip);

}  // namespace dupscope
