// The similarity engine: turns N normalised embeddings into similarity tiles and top-k lists.
//
// Tiles (I, J) with I <= J are handed to worker threads through an atomic counter; each is
// computed once and serves both halves of the symmetric matrix. What happens to a finished tile
// depends on the output mode:
//   Dense:  written straight into a caller-owned N x N float16 buffer (both halves).
//   Chunks: copied into fixed-size chunk buffers (tile x tile, the HDF5 chunk) queued for a
//           consumer thread, with back-pressure: at most `queue_chunks` buffers exist, so memory
//           stays bounded whatever N is.
//   None:   only the top-k lists are kept.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "dupscope/cpu_features.hpp"
#include "dupscope/huge_pages.hpp"
#include "dupscope/kernels.hpp"
#include "dupscope/lowp.hpp"
#include "dupscope/topk.hpp"

namespace dupscope {

namespace cuda { class TileContext; }

enum class Output { None, Dense, Chunks };

struct JobOptions {
  int64_t tile = 256;
  int k = 32;
  int threads = 0;          // 0: hardware concurrency
  SimdLevel simd = SimdLevel::Portable;
  bool use_cuda = false;
  int cuda_device = 0;  // CUDA device index when use_cuda
  Output output = Output::None;
  uint16_t* dense_out = nullptr;  // Output::Dense: N x N
  int queue_chunks = 0;           // Output::Chunks: 0 picks 2 * threads + 2
  // Only the rectangle of tiles (I, J) with row blocks [rect_row_begin, rect_row_end) and
  // column blocks [rect_col_begin, rect_col_end), strictly above the diagonal blocks
  // (rect_col_begin >= rect_row_end; Output::None only): the task of a pair of row ranges in a
  // distributed run. Used when rect_row_end > rect_row_begin.
  int64_t rect_row_begin = 0, rect_row_end = 0, rect_col_begin = 0, rect_col_end = 0;
  // Precision::Bf16 (Output::None only): tiles from bf16 rows; each row keeps its k best and up
  // to `candidates` - k near misses (TopK's spare), re-ranked with the float32 kernel (see
  // lowp.hpp); bf16_kernel picks the kernel (a hardware one must be available).
  Precision precision = Precision::Fp32;
  int candidates = 0;
  Bf16Kernel bf16_kernel = Bf16Kernel::Avx512;
  // Precision::Int8 (Output::None only): tiles from int8 rows (int8_kernel picks the kernel);
  // what a tile lets through is computed again in float32 at once, so the lists are float32's
  // (see offer_int8_tile). Rectangles of tiles are allowed: no row is ever searched again.
  Int8Kernel int8_kernel = Int8Kernel::Emulated;
  // Output::None, float32: choose each tile's top-k candidates with thresholds read before the
  // tile, as a list of TileCandidate (what the CUDA path does on the device, so that only
  // candidates cross PCIe; always on for CUDA). On the CPU it runs the same selection on the host,
  // which checks that logic on machines without a GPU.
  bool candidate_lists = false;
};

struct ChunkInfo {
  int64_t row_block = -1, col_block = -1;
};

class SimilarityJob {
 public:
  // `normalized` (n x d float32) and `valid` (n bytes, may be null = all valid) are copied.
  SimilarityJob(const float* normalized, int64_t n, int64_t d, const uint8_t* valid,
                const JobOptions& opt);
  ~SimilarityJob();
  SimilarityJob(const SimilarityJob&) = delete;
  SimilarityJob& operator=(const SimilarityJob&) = delete;

  void start();
  // Output::Chunks: waits up to timeout_ms for a finished chunk and copies it (tile * tile
  // float16) into dst. Returns 1 with `info` set, 0 on time-out, -1 when every chunk was popped.
  // Rethrows a worker's exception.
  int pop(uint16_t* dst, ChunkInfo& info, int timeout_ms);
  void cancel();
  // Waits up to timeout_ms for every worker to finish; true when they all have.
  bool wait_for(int timeout_ms);
  // Joins the workers and rethrows the first worker exception, if any.
  void wait();

  int64_t tiles_total() const { return tiles_total_; }
  int64_t tiles_done() const { return tiles_done_.load(); }
  int64_t chunks_total() const { return chunks_total_; }
  int threads() const { return threads_; }
  const char* device() const;
  // After wait(): each row's k nearest neighbours (see TopK::finish).
  void topk(int32_t* index, uint16_t* sim) const;
  // The same with the float32 similarities (what merge_topk needs to merge bands exactly).
  void topk_values(int32_t* index, float* sim) const;
  // Precision::Bf16: rows whose candidates could not prove their list and were searched again
  // in float32 (after wait()).
  int64_t fallback_rows() const { return fallback_rows_; }
  // Precision::Int8: tiles that let so much through that the float32 kernel computed them whole.
  int64_t float32_tiles() const { return float32_tiles_.load(); }

 private:
  void worker(int slot);
  void tile_pair(int64_t t, int64_t& bi, int64_t& bj) const;
  struct Rescore;  // a worker's buffers for the int8 tiles' float32 values
  void run_tile(int slot, int64_t bi, int64_t bj, TileWorkspace& ws, Rescore* rescore);
  void offer_int8_tile(int64_t i0, int64_t m, int64_t j0, int64_t nn, bool diag, TileWorkspace& ws, Rescore& rs);
  void fail(std::exception_ptr e);
  void rerank();  // Precision::Bf16, once after the workers are joined
  void rerank_rows(int64_t r0, int64_t r1, int64_t& fallbacks);
  void offer_candidate_lists(int slot, int64_t i0, int64_t m, int64_t j0, int64_t nn, bool diag, TileWorkspace& ws,
                             uint16_t* half = nullptr, int64_t ldo = 0);

  int64_t n_, d_;
  JobOptions opt_;
  const KernelSet* kernels_;
  HugeVector<float> emb_;  // gathered out of order by the bf16 re-rank
  std::vector<uint8_t> valid_;
  int64_t blocks_, tiles_total_, chunks_total_;
  int64_t rect_width_ = 0;  // > 0: rectangle mode (tile t is row rect_row_begin + t / width)
  int threads_;
  TopK topk_;
  std::unique_ptr<cuda::TileContext> cuda_;
  HugeVector<uint16_t> emb16_;  // Precision::Bf16: the rows in bf16
  HugeVector<uint16_t> packed16_;  // and packed for the hardware kernel (tile a multiple of 32)
  int64_t dp_ = 0;
  Int8Rows rows8_;                 // Precision::Int8: the rows in int8
  HugeVector<uint8_t> packed8_;    // and packed for the hardware kernel (tile a multiple of 32)
  float int8_slack_ = 0.0f;        // how far below a threshold an int8 value must still be looked at
  std::atomic<int64_t> float32_tiles_{0};  // Precision::Int8: tiles computed whole in float32
  std::vector<int32_t> final_index_;  // Precision::Bf16: the re-ranked lists
  std::vector<float> final_sim_;
  int64_t fallback_rows_ = 0;
  bool reranked_ = false;
  bool use_candidate_lists_ = false;

  std::atomic<int64_t> next_tile_{0};
  std::atomic<int64_t> tiles_done_{0};
  std::atomic<bool> cancelled_{false};
  std::vector<std::thread> workers_;
  bool started_ = false, joined_ = false;

  // chunk pool and queue (Output::Chunks)
  std::mutex qmu_;
  std::condition_variable q_ready_, q_free_;
  std::vector<std::vector<uint16_t>> buffers_;
  std::vector<int> free_;
  std::deque<std::pair<int, ChunkInfo>> ready_;
  int64_t chunks_popped_ = 0;
  int running_ = 0;  // workers not yet finished (guarded by qmu_)
  std::exception_ptr error_;
};

}  // namespace dupscope
