#include "dupscope/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "dupscope/cuda_tiles.hpp"
#include "dupscope/half.hpp"

namespace dupscope {

namespace {

constexpr int64_t kInt8DenseRatio = 256;

inline void prefetch(const char* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

}  // namespace

#if !defined(DUPSCOPE_HAS_CUDA)
namespace cuda {
bool available(std::string* why) {
  if (why != nullptr) *why = "dupscope was built without CUDA (nvcc not found or DUPSCOPE_CUDA=OFF)";
  return false;
}
int device_count() { return 0; }
std::string device_name(int) { return ""; }
struct TileContext::Impl {};
TileContext::TileContext(const float*, int64_t, int64_t, int64_t, int, int) {
  throw std::runtime_error("dupscope was built without CUDA");
}
TileContext::~TileContext() = default;
void TileContext::tile(int, int64_t, int64_t, int64_t, int64_t, float*, int64_t) {}
void TileContext::tile_candidates(int, int64_t, int64_t, int64_t, int64_t, bool, const float*, const float*,
                                  std::vector<TileCandidate>&) {}
void TileContext::tile_half(int, int64_t, int64_t, int64_t, int64_t, bool, const uint8_t*, const uint8_t*, uint16_t*,
                            int64_t, const float*, const float*, std::vector<TileCandidate>*) {}
void TileContext::filter(int, int64_t, int64_t, bool, const float*, const float*, std::vector<TileCandidate>&) {}
KernelTiming benchmark_kernel(int64_t, int64_t, int64_t, int) {
  throw std::runtime_error("dupscope was built without CUDA");
}
}  // namespace cuda
#endif

SimilarityJob::SimilarityJob(const float* normalized, int64_t n, int64_t d, const uint8_t* valid,
                             const JobOptions& opt)
    : n_(n), d_(d), opt_(opt), kernels_(&kernels_for(opt.simd)),
      emb_(normalized, normalized + n * d), valid_(static_cast<size_t>(n), 1),
      blocks_((n + opt.tile - 1) / opt.tile),
      tiles_total_(blocks_ * (blocks_ + 1) / 2),
      chunks_total_(blocks_ * blocks_),
      threads_(1),
      topk_(n, opt.k, opt.tile, opt.precision == Precision::Bf16 ? std::max(0, opt.candidates - opt.k) : 0,
            opt.precision == Precision::Bf16 ? bf16_margin(bf16_rows_bound(normalized, n, d)) : 0.0f) {
  if (n < 1 || d < 1) throw std::invalid_argument("need at least one row and one column");
  if (opt.tile < 16) throw std::invalid_argument("tile must be at least 16");
  if (valid != nullptr) std::memcpy(valid_.data(), valid, static_cast<size_t>(n));
  if (opt.rect_row_end > opt.rect_row_begin) {
    if (opt.rect_row_begin < 0 || opt.rect_col_begin < opt.rect_row_end || opt.rect_col_end <= opt.rect_col_begin ||
        opt.rect_col_end > blocks_)
      throw std::invalid_argument("the rectangle of row blocks [" + std::to_string(opt.rect_row_begin) + ", " +
                                  std::to_string(opt.rect_row_end) + ") and column blocks [" +
                                  std::to_string(opt.rect_col_begin) + ", " + std::to_string(opt.rect_col_end) +
                                  ") must lie above the diagonal, within the " + std::to_string(blocks_) + " blocks");
    if (opt.output != Output::None)
      throw std::invalid_argument("a rectangle of tiles computes top-k lists only (output 'none')");
    rect_width_ = opt.rect_col_end - opt.rect_col_begin;
    tiles_total_ = (opt.rect_row_end - opt.rect_row_begin) * rect_width_;
  }
  if (opt.precision == Precision::Bf16) {
    if (opt.output != Output::None) throw std::invalid_argument("bf16 tiles compute top-k lists only (output 'none')");
    if (opt.use_cuda) throw std::invalid_argument("bf16 tiles run on the CPU");
    if (rect_width_ > 0)  // a row that is searched again would search every column, not the rectangle's
      throw std::invalid_argument("bf16 tiles compute whole jobs, not a rectangle of tiles (use float32)");
    if (!bf16_kernel_available(opt.bf16_kernel))
      throw std::invalid_argument(opt.bf16_kernel == Bf16Kernel::Amx
                                      ? "this CPU or OS gives no AMX-BF16 (use bf16, the emulation or float32)"
                                      : "this CPU has no AVX512_BF16 (use the emulation or float32)");
    dp_ = bf16_depth_for(d, opt.bf16_kernel);
    emb16_.resize(static_cast<size_t>(n * dp_));
    to_bf16(emb_.data(), n, d, emb16_.data(), dp_);
    if (opt.bf16_kernel != Bf16Kernel::Emulated && opt.tile % 32 == 0) {  // every tile's columns start a strip: pack once
      packed16_.resize(static_cast<size_t>(bf16_pack_elems(n, dp_)));
      pack_bf16(emb16_.data(), n, dp_, packed16_.data());
    }
  }
  if (opt.precision == Precision::Int8) {
    if (opt.output != Output::None) throw std::invalid_argument("int8 tiles compute top-k lists only (output 'none')");
    if (opt.use_cuda) throw std::invalid_argument("int8 tiles run on the CPU");
    if (!int8_kernel_available(opt.int8_kernel))
      throw std::invalid_argument(opt.int8_kernel == Int8Kernel::Amx
                                      ? "this CPU or OS gives no AMX-INT8 (use int8, the emulation or float32)"
                                      : "this CPU has no AVX512_VNNI (use the emulation or float32)");
    rows8_ = quantize_int8(emb_.data(), n, d, int8_depth_for(d, opt.int8_kernel));
    if (opt.int8_kernel != Int8Kernel::Emulated && opt.tile % 32 == 0) {  // every tile's columns start a strip
      packed8_.resize(static_cast<size_t>(int8_pack_bytes(n, rows8_.dq)));
      pack_int8(rows8_, 0, n, packed8_.data());
    }
    // The tile is filtered on its raw products against 2 t - 1 for a threshold t in [0, 1]: 2e-6
    // covers the float32 roundings of that and of the map (1 + c) / 2 (a few 2^-24), rounded up.
    const double slack = int8_rows_bound(emb_.data(), rows8_) + 2e-6;
    int8_slack_ = static_cast<float>(slack);
    if (static_cast<double>(int8_slack_) < slack) int8_slack_ = std::nextafter(int8_slack_, 1.0f);
  }
  use_candidate_lists_ = opt.output == Output::None && opt.precision == Precision::Fp32 &&
                         (opt.candidate_lists || opt.use_cuda);
  int t = opt.threads > 0 ? opt.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads_ = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(t, tiles_total_)));
  if (opt.output == Output::Dense && opt.dense_out == nullptr)
    throw std::invalid_argument("dense output needs a buffer");
  if (opt.use_cuda)
    cuda_ = std::make_unique<cuda::TileContext>(emb_.data(), n, d, opt.tile, threads_, opt.cuda_device);
  if (opt.output == Output::Chunks) {
    const int q = opt.queue_chunks > 0 ? opt.queue_chunks : 2 * threads_ + 2;
    buffers_.resize(static_cast<size_t>(std::max(q, 2)));
    for (size_t b = 0; b < buffers_.size(); ++b) {
      buffers_[b].assign(static_cast<size_t>(opt.tile * opt.tile), 0);
      free_.push_back(static_cast<int>(b));
    }
  }
}

SimilarityJob::~SimilarityJob() {
  cancel();
  for (auto& w : workers_)
    if (w.joinable()) w.join();
}

const char* SimilarityJob::device() const { return cuda_ ? "cuda" : "cpu"; }

void SimilarityJob::start() {
  if (started_) throw std::logic_error("job already started");
  started_ = true;
  running_ = threads_;
  for (int s = 0; s < threads_; ++s) workers_.emplace_back([this, s] { worker(s); });
}

void SimilarityJob::tile_pair(int64_t t, int64_t& bi, int64_t& bj) const {
  // Row I of the upper triangle starts at tile I*B - I*(I-1)/2; find the last start <= t.
  const int64_t B = blocks_;
  int64_t lo = 0, hi = B - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (mid * B - mid * (mid - 1) / 2 <= t) lo = mid; else hi = mid - 1;
  }
  bi = lo;
  bj = lo + (t - (lo * B - lo * (lo - 1) / 2));
}

void SimilarityJob::fail(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> lock(qmu_);
    if (!error_) error_ = e;
  }
  cancelled_ = true;
  q_ready_.notify_all();
  q_free_.notify_all();
}

void SimilarityJob::cancel() {
  cancelled_ = true;
  q_ready_.notify_all();
  q_free_.notify_all();
}

void SimilarityJob::worker(int slot) {
  struct Done {  // tell wait_for() this worker has finished, however it leaves
    SimilarityJob* job;
    ~Done() {
      {
        std::lock_guard<std::mutex> lock(job->qmu_);
        --job->running_;
      }
      job->q_ready_.notify_all();
    }
  } done{this};
  try {
    const int64_t T = opt_.tile;
    AlignedFloats a_pack(a_pack_floats(*kernels_, T, d_)), b_pack(b_pack_floats(*kernels_, T));
    int64_t a_block = -1;
    // The bf16 kernel writes whole 12 x 32 micro-tiles.
    AlignedFloats c(std::max({c_floats(*kernels_, T), T * round_up(T, 16), round_up(T, 12) * round_up(T, 32)}));
    std::vector<uint16_t> b16(opt_.precision == Precision::Bf16 ? static_cast<size_t>(bf16_pack_elems(T, dp_)) : 0);
    const bool int8 = opt_.precision == Precision::Int8;
    std::vector<uint8_t> b8(int8 ? static_cast<size_t>(int8_pack_bytes(T, rows8_.dq)) : 0);
    std::unique_ptr<Rescore> rescore;
    if (int8) rescore = std::make_unique<Rescore>(*kernels_, T, d_);
    TileWorkspace ws;
    ws.a_pack = a_pack.p;
    ws.b_pack = b_pack.p;
    ws.c = c.p;
    ws.b16 = b16.data();
    ws.b8 = b8.data();
    for (;;) {
      if (cancelled_) return;
      const int64_t t = next_tile_.fetch_add(1);
      if (t >= tiles_total_) return;
      int64_t bi, bj;
      if (rect_width_ > 0) {
        bi = opt_.rect_row_begin + t / rect_width_;
        bj = opt_.rect_col_begin + t % rect_width_;
      } else {
        tile_pair(t, bi, bj);
      }
      ws.a_ready = bi == a_block;  // consecutive tiles of one row reuse the packed rows
      a_block = bi;
      run_tile(slot, bi, bj, ws, rescore.get());
      tiles_done_.fetch_add(1);
    }
  } catch (...) {
    fail(std::current_exception());
  }
}

// A worker's buffers for computing an int8 tile's survivors again in float32 (row_gemm over the
// gathered columns of one tile row).
struct SimilarityJob::Rescore {
  AlignedFloats b_pack, c;
  std::vector<float> gathered;
  std::vector<uint8_t> ones;
  TileWorkspace ws;
  int64_t packed_rows = -1;  // the first row of the float32 tile whose rows the tile workspace has packed
  Rescore(const KernelSet& kernels, int64_t tile, int64_t d)
      : b_pack(b_pack_floats(kernels, tile)), c(round_up(tile, kernels.nr)),
        gathered(static_cast<size_t>(tile * d)), ones(static_cast<size_t>(tile), 1) {
    ws.b_pack = b_pack.p;
    ws.c = c.p;
  }
};

void SimilarityJob::run_tile(int slot, int64_t bi, int64_t bj, TileWorkspace& ws, Rescore* rescore) {
  const int64_t T = opt_.tile;
  const int64_t i0 = bi * T, j0 = bj * T;
  const int64_t m = std::min(T, n_ - i0), nn = std::min(T, n_ - j0);
  const bool diag = bi == bj;
  // With CUDA and a dense output, the device also maps the tile and converts it to float16
  // (write_half below): half the bytes cross PCIe and the host only transposes.
  const bool device_half = cuda_ && opt_.output != Output::None;
  if (cuda_ && (use_candidate_lists_ || device_half)) {
    // The device filters the tile; only its candidates come back (offer_candidate_lists).
  } else if (cuda_) {
    ws.ldc = round_up(nn, 16);
    cuda_->tile(slot, i0, m, j0, nn, ws.c, ws.ldc);
  } else if (opt_.precision == Precision::Bf16) {
    ws.ldc = round_up(nn, 32);
    if (!packed16_.empty())
      gemm_bf16(emb16_.data() + i0 * dp_, m, nullptr, nn, dp_, ws.c, ws.ldc, packed16_.data() + j0 * dp_,
                opt_.bf16_kernel, true);
    else
      gemm_bf16(emb16_.data() + i0 * dp_, m, emb16_.data() + j0 * dp_, nn, dp_, ws.c, ws.ldc, ws.b16,
                opt_.bf16_kernel);
  } else if (opt_.precision == Precision::Int8) {
    ws.ldc = round_up(nn, 32);
    const bool packed = !packed8_.empty();
    gemm_int8(rows8_, i0, m, rows8_, j0, nn, ws.c, ws.ldc, packed ? packed8_.data() + j0 * rows8_.dq : ws.b8,
              opt_.int8_kernel, packed);
  } else {
    kernels_->gemm(emb_.data() + i0 * d_, m, emb_.data() + j0 * d_, nn, d_, ws);
  }
  const uint8_t* rv = valid_.data() + i0;
  const uint8_t* cv = valid_.data() + j0;
  if (opt_.precision == Precision::Int8) {
    offer_int8_tile(i0, m, j0, nn, diag, ws, *rescore);
    return;
  }
  if (use_candidate_lists_) {
    offer_candidate_lists(slot, i0, m, j0, nn, diag, ws);
    return;
  }
  auto write_half = [&](uint16_t* out, int64_t ldo, uint16_t* out_t, int64_t ldo_t) {
    if (!device_half) {
      kernels_->epilogue(ws.c, ws.ldc, m, nn, rv, cv, diag, out, ldo, out_t, ldo_t);
      return;
    }
    offer_candidate_lists(slot, i0, m, j0, nn, diag, ws, out, ldo);  // the top-k offered there
    if (out_t != nullptr) kernels_->transpose(out, ldo, m, nn, out_t, ldo_t);
  };
  if (opt_.output == Output::Dense) {
    uint16_t* out = opt_.dense_out + i0 * n_ + j0;
    uint16_t* out_t = diag ? nullptr : opt_.dense_out + j0 * n_ + i0;
    write_half(out, n_, out_t, n_);
  } else if (opt_.output == Output::Chunks) {
    const size_t need = diag ? 1 : 2;
    int ba = -1, bb = -1;
    {
      std::unique_lock<std::mutex> lock(qmu_);
      q_free_.wait(lock, [&] { return cancelled_ || free_.size() >= need; });
      if (cancelled_) return;
      ba = free_.back();
      free_.pop_back();
      if (!diag) {
        bb = free_.back();
        free_.pop_back();
      }
    }
    uint16_t* out = buffers_[ba].data();
    uint16_t* out_t = diag ? nullptr : buffers_[bb].data();
    if (m < T || nn < T) {  // edge chunk: HDF5 stores the full chunk, keep the padding zero
      std::fill(out, out + T * T, uint16_t{0});
      if (out_t) std::fill(out_t, out_t + T * T, uint16_t{0});
    }
    write_half(out, T, out_t, T);
    {
      std::lock_guard<std::mutex> lock(qmu_);
      ready_.push_back({ba, ChunkInfo{bi, bj}});
      if (!diag) ready_.push_back({bb, ChunkInfo{bj, bi}});
    }
    q_ready_.notify_all();
  } else if (opt_.precision != Precision::Bf16) {
    kernels_->epilogue(ws.c, ws.ldc, m, nn, rv, cv, diag, nullptr, 0, nullptr, 0);
  }  // bf16 candidates are chosen on the raw products (the map is monotonic): see bf16_margin
  if (!device_half) topk_.offer_tile(ws.c, ws.ldc, i0, m, j0, nn, valid_.data(), diag, kernels_->scan);
}

// The int8 tile's raw products filter; the float32 kernel decides. Every value within
// int8_slack_ of a row's (or a column's) threshold of the moment is computed again with
// row_gemm, the float32 path's own bits for the pair (see rerank_rows), and offered as that. A
// value the filter drops is below the threshold in float32 too, as the slack covers the int8
// error bound (int8_rows_bound), so no list misses anything the float32 path would keep: the
// lists are the float32 path's, indices and values.
void SimilarityJob::offer_int8_tile(int64_t i0, int64_t m, int64_t j0, int64_t nn, bool diag, TileWorkspace& ws,
                                    Rescore& rs) {
  auto exact = [&](int64_t r, const int32_t* hits, int64_t h, float* out) {
    const float* cols = emb_.data() + j0 * d_;
    if (h < nn) {  // hits are in increasing order: h == nn means every column, already in a row
      for (int64_t q = 0; q < h; ++q)
        std::memcpy(rs.gathered.data() + q * d_, emb_.data() + (j0 + hits[q]) * d_, d_ * sizeof(float));
      cols = rs.gathered.data();
    }
    kernels_->row_gemm(emb_.data() + (i0 + r) * d_, cols, h, d_, rs.ws);
    kernels_->epilogue(rs.ws.c, rs.ws.ldc, 1, h, rs.ones.data(), rs.ones.data(), false, nullptr, 0, nullptr, 0);
    std::memcpy(out, rs.ws.c, static_cast<size_t>(h) * sizeof(float));
  };
  // A tile that lets through more than 1 / kInt8DenseRatio of its values goes whole to the
  // float32 kernel instead: a tile row computed again costs a pack of its columns, about as much
  // as a few hundred values of a whole tile (ratios 64 to 4096 measured, see RESULTS.md).
  const int64_t max_hits = m * nn / kInt8DenseRatio;
  if (topk_.offer_rescored(ws.c, ws.ldc, i0, m, j0, nn, valid_.data(), diag, kernels_->scan, int8_slack_, max_hits,
                           exact))
    return;
  ++float32_tiles_;
  ws.a_ready = rs.packed_rows == i0;  // a_pack holds the rows of this worker's last float32 tile only
  rs.packed_rows = i0;
  kernels_->gemm(emb_.data() + i0 * d_, m, emb_.data() + j0 * d_, nn, d_, ws);
  kernels_->epilogue(ws.c, ws.ldc, m, nn, valid_.data() + i0, valid_.data() + j0, diag, nullptr, 0, nullptr, 0);
  topk_.offer_tile(ws.c, ws.ldc, i0, m, j0, nn, valid_.data(), diag, kernels_->scan);
}

// The candidate-list selection: thresholds of the tile's rows and columns read first, the tile
// filtered against them (on the device for CUDA; here on the host from the float32 tile, mapped
// by the epilogue), and what passed offered to the lists, checked again against the thresholds
// of the moment. With `half` (CUDA only), the device also writes the tile's float16 values there
// (row stride ldo), from the same products.
void SimilarityJob::offer_candidate_lists(int slot, int64_t i0, int64_t m, int64_t j0, int64_t nn, bool diag,
                                          TileWorkspace& ws, uint16_t* half, int64_t ldo) {
  const bool lists = opt_.k > 0;
  if (!lists && half == nullptr) return;
  thread_local std::vector<float> rthr, cthr;
  thread_local std::vector<TileCandidate> cand;
  rthr.resize(static_cast<size_t>(m));
  cthr.resize(static_cast<size_t>(nn));
  if (lists) {
    topk_.thresholds(i0, m, valid_.data(), rthr.data());
    if (!diag) topk_.thresholds(j0, nn, valid_.data(), cthr.data());
  }
  cand.clear();
  if (cuda_ && half != nullptr) {
    cuda_->tile_half(slot, i0, m, j0, nn, diag, valid_.data() + i0, valid_.data() + j0, half, ldo, rthr.data(),
                     cthr.data(), lists ? &cand : nullptr);
    if (!lists) return;
  } else if (cuda_) {
    cuda_->tile_candidates(slot, i0, m, j0, nn, diag, rthr.data(), cthr.data(), cand);
  } else {
    kernels_->gemm(emb_.data() + i0 * d_, m, emb_.data() + j0 * d_, nn, d_, ws);
    kernels_->epilogue(ws.c, ws.ldc, m, nn, valid_.data() + i0, valid_.data() + j0, diag, nullptr, 0, nullptr, 0);
    thread_local std::vector<int32_t> hits;
    hits.resize(static_cast<size_t>(nn));
    for (int64_t r = 0; r < m; ++r) {
      const float* cr = ws.c + r * ws.ldc;
      const int64_t h = kernels_->scan(cr, nn, rthr[r], diag ? nullptr : cthr.data(), hits.data());
      for (int64_t q = 0; q < h; ++q)
        cand.push_back(TileCandidate{static_cast<int32_t>(r), hits[q], cr[hits[q]]});
    }
  }
  topk_.offer_candidates(cand.data(), static_cast<int64_t>(cand.size()), i0, j0, valid_.data(), diag);
}

int SimilarityJob::pop(uint16_t* dst, ChunkInfo& info, int timeout_ms) {
  std::unique_lock<std::mutex> lock(qmu_);
  if (chunks_popped_ >= chunks_total_) return -1;
  const bool got = q_ready_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return !ready_.empty() || error_ != nullptr || cancelled_;
  });
  if (error_) std::rethrow_exception(error_);
  if (!got || ready_.empty()) {
    if (cancelled_) throw std::runtime_error("similarity job was cancelled");
    return 0;
  }
  auto [buf, ci] = ready_.front();
  ready_.pop_front();
  std::memcpy(dst, buffers_[buf].data(), buffers_[buf].size() * sizeof(uint16_t));
  free_.push_back(buf);
  ++chunks_popped_;
  info = ci;
  lock.unlock();
  q_free_.notify_all();
  return 1;
}

bool SimilarityJob::wait_for(int timeout_ms) {
  std::unique_lock<std::mutex> lock(qmu_);
  return q_ready_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                           [&] { return running_ == 0; });
}

void SimilarityJob::wait() {
  for (auto& w : workers_)
    if (w.joinable()) w.join();
  joined_ = true;
  {
    std::lock_guard<std::mutex> lock(qmu_);
    if (error_) std::rethrow_exception(error_);
  }
  if (opt_.precision == Precision::Bf16 && !reranked_) rerank();
}

void SimilarityJob::rerank() {
  final_index_.assign(static_cast<size_t>(n_ * opt_.k), -1);
  final_sim_.assign(static_cast<size_t>(n_ * opt_.k), 0.0f);
  const int nt = std::max(1, threads_);
  std::vector<int64_t> fallbacks(static_cast<size_t>(nt), 0);
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(nt));
  for (int s = 0; s < nt; ++s) {
    pool.emplace_back([&, s] {
      try {
        rerank_rows(n_ * s / nt, n_ * (s + 1) / nt, fallbacks[s]);
      } catch (...) {
        errors[s] = std::current_exception();
      }
    });
  }
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  fallback_rows_ = 0;
  for (int64_t f : fallbacks) fallback_rows_ += f;
  reranked_ = true;
}

// Each row's candidates (its k best bf16 products and its near misses, TopK::candidates) get
// the float32 kernel's products (the very values the float32 path computes: its micro-kernel's
// sum for a pair does not depend on the tile, and is symmetric), mapped by its epilogue, and
// the best k of them stand. Why that is the float32 list: every column the row did not keep has
// a bf16 product more than bf16_margin below the k-th best bf16 product v, so its float32
// product is more than the bound (bf16_rows_bound: these rows') plus a few ulps below v, while each of the k best is at least
// v minus the bound in float32. A row whose near misses overflowed is searched again in float32.
void SimilarityJob::rerank_rows(int64_t r0, int64_t r1, int64_t& fallbacks) {
  const int k = opt_.k;
  const int64_t T = opt_.tile;
  const int64_t most = topk_.max_candidates();
  const int64_t width = std::max<int64_t>(most, T);
  AlignedFloats b_pack(b_pack_floats(*kernels_, width)), c(round_up(width, kernels_->nr));
  std::vector<float> gathered(static_cast<size_t>(most * d_));
  std::vector<uint8_t> ones(static_cast<size_t>(width), 1);
  std::vector<std::pair<float, int32_t>> cand, best;
  TileWorkspace ws;
  ws.b_pack = b_pack.p;
  ws.c = c.p;
  auto better = [](const std::pair<float, int32_t>& x, const std::pair<float, int32_t>& y) {
    return x.first > y.first || (x.first == y.first && x.second < y.second);
  };
  // The candidates' rows are scattered over the whole matrix: the next row's are fetched into
  // the cache while this row's products are computed.
  std::vector<std::pair<float, int32_t>> next;
  bool next_proven = r0 < r1 && valid_[r0] ? topk_.candidates(r0, next) : true;
  for (int64_t row = r0; row < r1; ++row) {
    best.clear();
    cand.swap(next);
    const bool proven = next_proven;
    next.clear();
    if (row + 1 < r1 && valid_[row + 1]) {
      next_proven = topk_.candidates(row + 1, next);
      for (const auto& c : next) {
        const char* p = reinterpret_cast<const char*>(emb_.data() + static_cast<int64_t>(c.second) * d_);
        for (int64_t off = 0; off < d_ * 4; off += 64) prefetch(p + off);
      }
    }
    if (!valid_[row]) continue;
    const int64_t cnt = static_cast<int64_t>(cand.size());
    if (proven && cnt > 0) {
      for (int64_t t = 0; t < cnt; ++t)
        std::memcpy(gathered.data() + t * d_, emb_.data() + static_cast<int64_t>(cand[t].second) * d_,
                    d_ * sizeof(float));
      kernels_->row_gemm(emb_.data() + row * d_, gathered.data(), cnt, d_, ws);
      kernels_->epilogue(ws.c, ws.ldc, 1, cnt, ones.data(), ones.data(), false, nullptr, 0, nullptr, 0);
      for (int64_t t = 0; t < cnt; ++t) best.emplace_back(ws.c[t], cand[t].second);
      const int64_t keep = std::min<int64_t>(cnt, k);
      std::partial_sort(best.begin(), best.begin() + keep, best.end(), better);
      best.resize(static_cast<size_t>(keep));
    }
    if (!proven) {
      ++fallbacks;
      for (int64_t j0 = 0; j0 < n_; j0 += T) {
        const int64_t nn = std::min(T, n_ - j0);
        kernels_->row_gemm(emb_.data() + row * d_, emb_.data() + j0 * d_, nn, d_, ws);
        kernels_->epilogue(ws.c, ws.ldc, 1, nn, ones.data(), ones.data(), false, nullptr, 0, nullptr, 0);
        for (int64_t s = 0; s < nn; ++s) {
          const int64_t j = j0 + s;
          if (j == row || !valid_[j]) continue;
          best.emplace_back(ws.c[s], static_cast<int32_t>(j));
        }
        if (static_cast<int64_t>(best.size()) > 4 * k + T) {  // keep the working set small
          std::partial_sort(best.begin(), best.begin() + k, best.end(), better);
          best.resize(static_cast<size_t>(k));
        }
      }
      const int keep = static_cast<int>(std::min<size_t>(best.size(), static_cast<size_t>(k)));
      std::partial_sort(best.begin(), best.begin() + keep, best.end(), better);
      best.resize(static_cast<size_t>(keep));
    }
    for (size_t t = 0; t < best.size(); ++t) {
      final_index_[row * k + t] = best[t].second;
      final_sim_[row * k + t] = best[t].first;
    }
  }
}

void SimilarityJob::topk(int32_t* index, uint16_t* sim) const {
  if (!joined_) throw std::logic_error("topk() needs the job to be finished (wait())");
  if (opt_.precision != Precision::Bf16) {
    topk_.finish(index, sim);
    return;
  }
  for (int64_t q = 0; q < n_ * opt_.k; ++q) {
    index[q] = final_index_[q];
    sim[q] = final_index_[q] < 0 ? kHalfNaN : float_to_half(final_sim_[q]);
  }
}

void SimilarityJob::topk_values(int32_t* index, float* sim) const {
  if (!joined_) throw std::logic_error("topk() needs the job to be finished (wait())");
  if (opt_.precision != Precision::Bf16) {
    topk_.finish_values(index, sim);
    return;
  }
  for (int64_t q = 0; q < n_ * opt_.k; ++q) {
    index[q] = final_index_[q];
    sim[q] = final_index_[q] < 0 ? std::numeric_limits<float>::quiet_NaN() : final_sim_[q];
  }
}

}  // namespace dupscope
