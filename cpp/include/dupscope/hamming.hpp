// Matching of binary descriptors (ORB: 32 bytes each) by Hamming distance, for the geometric
// verification of candidate pairs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dupscope {

// Mutual nearest neighbours between descriptor sets `a` (na x bytes) and `b` (nb x bytes) that
// pass Lowe's ratio test both ways: b[j] is a[i]'s nearest descriptor with distance below
// `ratio` times its second nearest, and a[i] is b[j]'s, likewise. `bytes` must be a multiple
// of 8. One pass over the na x nb distances serves both directions; ties go to the lower index
// (and then fail the ratio test, since the second nearest is as near). Appends the pairs to
// `ia` and `ib` in increasing order of i.
//
// `kernel` picks the implementation: "auto" (the best one the CPU runs, within the level
// DUPSCOPE_SIMD allows), "portable", "avx2", "avx512" (table-lookup popcount) or "avx512-vpopcnt"; the
// vector kernels serve 32-byte descriptors and give the same pairs as the portable one. Throws
// std::invalid_argument for an unknown or unsupported kernel.
void mutual_ratio_matches(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int bytes,
                          float ratio, std::vector<int32_t>& ia, std::vector<int32_t>& ib,
                          const std::string& kernel = "auto");

// The kernels this CPU and build can run for 32-byte descriptors, best last.
std::vector<std::string> hamming_kernels();

}  // namespace dupscope
