// Duplicate groups that need agreement (the delete list's rule), for dupscope.export and the
// explorer: no two different pictures are chained into one group through a look-alike, and the
// groups at a lower threshold are unions of the groups at a higher one (they nest).
#pragma once
#include <cstdint>
#include <vector>

namespace dupscope {

// One step of the hierarchy: the groups holding rows u and v become one at score `level`.
struct Merge {
  int32_t u, v;
  float level;
};

// Complete-linkage hierarchy of n images from P scored pairs (a[p], b[p], score[p]; each pair
// once, a != b; a NaN score is no link). Pairs are taken from the highest score down (ties: the
// lower row first, then the other row); a pair joins its two groups when every image of one is
// then linked to every image of the other by a pair already taken. So every two members of a
// group at threshold t are a pair scoring at least t, and for distinct scores this is textbook
// complete linkage. Returns the merges in the order made (levels never increase), at most n - 1.
// Time: sorting the pairs plus, per pair, a scan of the smaller group's members' links taken so
// far (stopping at the first member short of a link); memory a few arrays of n and of the pairs.
std::vector<Merge> linkage_merges(int64_t n, const int32_t* a, const int32_t* b, const float* score, int64_t pairs);

// Groups at `threshold` from a merge list: the merges with level >= threshold, replayed in order,
// except that a merge is not made when it would put the two rows of a `skip` pair (skip_a[q],
// skip_b[q]; a person's "not a duplicate") into one group. The groups stay subsets of the
// hierarchy's groups, so every two members are still linked. Returns per image the lowest row of
// its group, or -1 for an image in no group. Time linear in the merges and the skip pairs.
std::vector<int32_t> replay_merges(int64_t n, const Merge* merges, int64_t count, float threshold,
                                   const int32_t* skip_a, const int32_t* skip_b, int64_t skips);

}  // namespace dupscope
