// The CUDA path, seen from plain C++ (no CUDA headers here). Built only when nvcc was found;
// otherwise engine.cpp supplies versions that report "built without CUDA".
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dupscope/topk.hpp"

namespace dupscope {
namespace cuda {

// True when this build has CUDA and a usable device exists; otherwise `why` says why not.
bool available(std::string* why);
// Number of usable CUDA devices (0 without CUDA).
int device_count();
std::string device_name(int device = 0);

// Holds the normalised embeddings on the device as float16 and computes cosine tiles with a
// tensor-core kernel (float16 in, float32 accumulate). Each host worker thread uses its own
// slot (stream + buffers), so tiles from several threads overlap on the device.
class TileContext {
 public:
  // `device` is the CUDA device index; every call makes it current on the calling thread.
  TileContext(const float* normalized, int64_t n, int64_t d, int64_t max_tile, int slots,
              int device = 0);
  ~TileContext();
  TileContext(const TileContext&) = delete;
  TileContext& operator=(const TileContext&) = delete;
  // cos of rows [i0, i0+m) x [j0, j0+n) into host c (row stride ldc floats).
  void tile(int slot, int64_t i0, int64_t m, int64_t j0, int64_t n, float* c, int64_t ldc);
  // The same tile mapped to [0, 1] on the device (clamp((1 + cos) / 2), the CPU epilogue's map)
  // and filtered there: only the values v at (r, s) with v >= row_thr[r] or, unless diag,
  // v >= col_thr[s] are copied back, appended to out. The top-k path: at 1M images the whole
  // tiles would be 4 TB across PCIe, the candidates a few GB.
  void tile_candidates(int slot, int64_t i0, int64_t m, int64_t j0, int64_t n, bool diag,
                       const float* row_thr, const float* col_thr, std::vector<TileCandidate>& out);
  // The dense output's tile, mapped and converted to float16 on the device exactly as the CPU
  // epilogue does (1 on a diagonal tile's diagonal, float16 NaN in rows or columns not valid),
  // into host out (row stride ldo): half the bytes of the float32 tile cross PCIe. With `cand`,
  // the same products are also filtered for the top-k as tile_candidates does.
  void tile_half(int slot, int64_t i0, int64_t m, int64_t j0, int64_t n, bool diag, const uint8_t* row_valid,
                 const uint8_t* col_valid, uint16_t* out, int64_t ldo, const float* row_thr, const float* col_thr,
                 std::vector<TileCandidate>* cand);

 private:
  // The top-k filter of the products in the slot's tile buffer (after a launch on its stream).
  void filter(int slot, int64_t m, int64_t n, bool diag, const float* row_thr, const float* col_thr,
              std::vector<TileCandidate>& out);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct KernelTiming {
  double ms_ours = 0, ms_cublas = -1;  // -1 when cuBLAS is not loadable
  double tflops_ours = 0, tflops_cublas = 0;
  double max_abs_diff = 0;             // ours vs cuBLAS (or vs a CPU check when absent)
};
// Times the tile kernel on an m x n x d problem from device-resident random data; compares with
// cuBLAS (loaded at run time with dlopen, so building needs no cuBLAS) when it is available.
KernelTiming benchmark_kernel(int64_t m, int64_t n, int64_t d, int iters);

}  // namespace cuda
}  // namespace dupscope
