// Per-row top-k of the similarity matrix, collected tile by tile without the matrix.
//
// Each row keeps a binary heap of its k best candidates with the worst on top, so a candidate
// is rejected with one comparison once the row is full. "Better" means a higher similarity, and
// for equal similarities a lower column index. Rows are guarded per row block: a tile (I, J)
// updates the rows of block I under I's lock and those of block J under J's lock, one at a
// time, so workers on different tiles rarely wait and can never deadlock.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace dupscope {

class TopK {
 public:
  TopK(int64_t n, int k, int64_t block);

  int k() const { return k_; }

  // c holds similarities of rows [i0, i0+m) (tile rows r) and [j0, j0+n) (tile columns s).
  // Offers c[r][s] to row i0+r. Skips the pair (i, i), and rows or columns not valid.
  void offer_rows(const float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                  const uint8_t* valid);
  // Offers c[r][s] to row j0+s (the transposed half of an off-diagonal tile).
  void offer_cols(const float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n,
                  const uint8_t* valid);

  // Writes each row's neighbours, best first: index (-1 where fewer than k) and similarity as
  // float16 (NaN where the index is -1). Must not run concurrently with offers.
  void finish(int32_t* index, uint16_t* sim) const;
  // The same with float32 similarities (NaN where the index is -1).
  void finish_values(int32_t* index, float* sim) const;

 private:
  bool push(int64_t row, float v, int32_t j);  // returns true if accepted
  float threshold(int64_t row) const;

  int64_t n_;
  int k_;
  int64_t block_;
  std::vector<float> val_;
  std::vector<int32_t> idx_;
  std::vector<int32_t> count_;
  std::unique_ptr<std::mutex[]> locks_;
};

// Merges two sets of n best-first lists of k neighbours (float32 similarities, -1 / NaN
// padding) over disjoint columns into the k best of both, with TopK's order (higher similarity
// first, then the lower index): the lists of one row computed in several bands, merged, equal
// the lists of one job over all of them. Output arrays may alias the first input.
void merge_topk(int64_t n, int k, const int32_t* index_a, const float* sim_a, const int32_t* index_b,
                const float* sim_b, int32_t* index_out, float* sim_out);

}  // namespace dupscope
