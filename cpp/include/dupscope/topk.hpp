// Per-row top-k of the similarity matrix, collected tile by tile without the matrix.
//
// Each row keeps a binary heap of its k best candidates with the worst on top, so a candidate
// is rejected with one comparison once the row is full. "Better" means a higher similarity, and
// for equal similarities a lower column index. Rows are guarded per row block: a tile (I, J)
// updates the rows of blocks I and J under both blocks' locks, taken in increasing block order,
// so workers can never deadlock.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "dupscope/huge_pages.hpp"

namespace dupscope {

// A tile row filter (KernelSet::scan): positions s with c[s] >= rthr or c[s] >= cthr[s].
using ScanFn = int64_t (*)(const float* c, int64_t n, float rthr, const float* cthr, int32_t* hits);

// One value of a tile that may enter a list: tile row r, tile column s (the CUDA path's filter,
// which sends only these across PCIe instead of the whole tile).
struct TileCandidate {
  int32_t r, s;
  float v;
};

class TopK {
 public:
  // margin > 0 (the bf16 candidate pass, see lowp.hpp): besides its k best, a row keeps up to
  // `spare` near misses, the values it saw within `margin` below its k-th best of the moment.
  // Every value a row never kept is then more than `margin` below its final k-th best.
  TopK(int64_t n, int k, int64_t block, int spare = 0, float margin = 0.0f);

  int k() const { return k_; }
  // The most entries candidates() can return: k and the near-miss places.
  int max_candidates() const { return k_ + spare_; }

  // c holds similarities of rows [i0, i0+m) (tile rows r) and [j0, j0+n) (tile columns s).
  // Offers c[r][s] to row i0+r and, unless diag (a tile on the diagonal: c is the whole square
  // of one block, so every pair reaches both of its rows through the rows), to row j0+s. Skips
  // the pair (i, i) and rows or columns not valid. `scan` filters each tile row: the tile is
  // read once, and a pair is looked at only when it can enter one of its two rows.
  void offer_tile(const float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                  const uint8_t* valid, bool diag, ScanFn scan);

  // The same for a tile given as the values a filter let through (in row-major order): the pairs
  // whose value reached the row's or the column's threshold as the filter saw it. Thresholds
  // only rise, so a filter that read older thresholds lets more through, never fewer; every
  // candidate is checked again here against the current ones.
  void offer_candidates(const TileCandidate* c, int64_t count, int64_t i0, int64_t j0,
                        const uint8_t* valid, bool diag);
  // The same for a tile of approximate raw products c (the int8 tiles, before the map to
  // (1 + c) / 2): each tile row is filtered at `slack` below the thresholds of the moment, in
  // the products' units, and `exact(r, hits, h, out)` gives the exact values of the h positions
  // of tile row r that passed, which are offered instead (each against the current thresholds),
  // so rows hold only exact values. Returns false, having offered nothing, when more than
  // max_hits positions pass (then the caller offers the exact tile).
  using Rescore = std::function<void(int64_t r, const int32_t* hits, int64_t h, float* out)>;
  bool offer_rescored(const float* approx, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                      const uint8_t* valid, bool diag, ScanFn scan, float slack, int64_t max_hits,
                      const Rescore& exact);
  // Each row's current threshold for rows [r0, r0 + n) into out (-inf while a row holds fewer
  // than k, +inf for rows not valid): what a filter elsewhere needs.
  void thresholds(int64_t r0, int64_t n, const uint8_t* valid, float* out) const;

  // Writes each row's neighbours, best first: index (-1 where fewer than k) and similarity as
  // float16 (NaN where the index is -1). Must not run concurrently with offers.
  void finish(int32_t* index, uint16_t* sim) const;
  // The same with float32 similarities (NaN where the index is -1).
  void finish_values(int32_t* index, float* sim) const;
  // With margin > 0: row's k best and its near misses still within `margin` of its k-th best,
  // best first. False when the near misses did not fit in `spare` (then values within the
  // margin may be missing: the row must be searched again).
  bool candidates(int64_t row, std::vector<std::pair<float, int32_t>>& out) const;

 private:
  // 0: rejected, 1: accepted, 2: accepted and the former worst (*ev, *ej) evicted.
  int push(int64_t row, float v, int32_t j, float* ev, int32_t* ej);
  void offer(int64_t row, float v, int32_t j);
  void keep_near(int64_t row, float v, int32_t j);
  float threshold(int64_t row) const;
  float scan_threshold(int64_t row) const { return threshold(row) - margin_; }
  // thresholds() for a caller that already holds the rows' lock.
  void thresholds_held(int64_t r0, int64_t n, const uint8_t* valid, float* out) const;
  // The locks of the blocks of rows i0 and j0, in increasing block order (one when they agree).
  std::pair<std::unique_lock<std::mutex>, std::unique_lock<std::mutex>> lock_blocks(int64_t i0, int64_t j0) const;

  int64_t n_;
  int k_;
  int64_t block_;
  int spare_;
  float margin_;
  HugeVector<float> val_;
  HugeVector<int32_t> idx_;
  std::vector<int32_t> count_;
  HugeVector<float> spare_val_;
  HugeVector<int32_t> spare_idx_;
  std::vector<int32_t> spare_count_;
  std::vector<uint8_t> overflow_;
  std::unique_ptr<std::mutex[]> locks_;
};

// Merges two sets of n best-first lists of k neighbours (float32 similarities, -1 / NaN
// padding) over disjoint columns into the k best of both, with TopK's order (higher similarity
// first, then the lower index): the lists of one row computed in several bands, merged, equal
// the lists of one job over all of them. Output arrays may alias the first input.
void merge_topk(int64_t n, int k, const int32_t* index_a, const float* sim_a, const int32_t* index_b,
                const float* sim_b, int32_t* index_out, float* sim_out);

}  // namespace dupscope
