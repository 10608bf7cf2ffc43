// Runs the AVX-512 kernel (compiled against tests/cpp/emulated_avx512/immintrin.h) on awkward
// tile shapes and compares the dot products with a double-precision loop and the epilogue with
// the portable float16 conversion. Exit status 0 when everything matches.
#include "dupscope/kernels.hpp"
#include "dupscope/half.hpp"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <vector>
#include <random>
using namespace dupscope;
int main() {
  const KernelSet& ks = kernels_avx512();
  std::mt19937 rng(3); std::normal_distribution<float> nd;
  double worst = 0; int cases = 0;
  for (int64_t m : {1, 7, 12, 13, 100, 256}) for (int64_t n : {1, 15, 16, 33, 100, 256}) for (int64_t d : {1, 3, 191, 192, 193, 513}) {
    std::vector<float> a(m * d), b(n * d);
    for (auto& x : a) x = nd(rng); for (auto& x : b) x = nd(rng);
    int64_t T = 256;
    TileWorkspace ws;
    ws.a_pack = (float*)aligned_alloc(64, a_pack_floats(ks, T, d) * 4 + 64);
    ws.b_pack = (float*)aligned_alloc(64, b_pack_floats(ks, T) * 4 + 64);
    ws.c = (float*)aligned_alloc(64, c_floats(ks, T) * 4 + 64);
    ks.gemm(a.data(), m, b.data(), n, d, ws);
    std::vector<uint8_t> rv(m, 1), cv(n, 1); if (n > 3) cv[2] = 0;
    std::vector<uint16_t> out(m * n, 0xFFFF), outt(n * m, 0xFFFF);
    // keep raw dots for checking before the epilogue overwrites c
    std::vector<float> raw(m * n);
    for (int64_t r = 0; r < m; ++r) for (int64_t s = 0; s < n; ++s) raw[r * n + s] = ws.c[r * ws.ldc + s];
    // One row at a time (the bf16 re-rank's products): the same bits as the tile's row.
    for (int64_t r = 0; r < m; r += (m > 13 ? 37 : 1)) {
      std::vector<float> keep(ws.c, ws.c + c_floats(ks, T));
      for (int64_t t = 0; t < (n + 31) / 32 * 32; ++t) ws.c[t] = NAN;
      ks.row_gemm(a.data() + r * d, b.data(), n, d, ws);
      if (ws.ldc != (n + 31) / 32 * 32 || std::memcmp(ws.c, raw.data() + r * n, n * sizeof(float)) != 0) {
        printf("row_gemm differs from gemm m%ld n%ld d%ld row %ld\n", m, n, d, r); return 1;
      }
      std::copy(keep.begin(), keep.end(), ws.c);
      ws.ldc = (n + 31) / 32 * 32;
    }
    ks.epilogue(ws.c, ws.ldc, m, n, rv.data(), cv.data(), false, out.data(), n, outt.data(), m);
    for (int64_t r = 0; r < m; ++r) for (int64_t s = 0; s < n; ++s) {
      double ref = 0; for (int64_t k = 0; k < d; ++k) ref += (double)a[r * d + k] * b[s * d + k];
      double e = std::fabs(ref - raw[r * n + s]) / (1 + std::fabs(ref)); if (e > worst) worst = e;
      float u = std::fmin(1.f, std::fmax(0.f, 0.5f * raw[r * n + s] + 0.5f));
      uint16_t want = cv[s] ? float_to_half(u) : 0x7E00;
      if (out[r * n + s] != want || outt[s * m + r] != out[r * n + s]) { printf("epilogue mismatch m%ld n%ld d%ld at %ld,%ld\n", m, n, d, r, s); return 1; }
    }
    free(ws.a_pack); free(ws.b_pack); free(ws.c); ++cases;
  }
  // The top-k's row filter: positions with c >= rthr or c >= cthr, NaN never, at awkward lengths.
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  // Sparse rows (sparse > 0): a single hit, by row threshold or column threshold, anywhere in
  // the blocks of 64 and 16 or the tail.
  for (int sparse = 0; sparse < 3; ++sparse)
  for (int64_t n : {1, 15, 16, 17, 63, 64, 65, 100, 129, 256}) for (int with_cols = 0; with_cols < 2; ++with_cols)
  for (int64_t at = 0; at < (sparse ? n : 1); ++at) {
    std::vector<float> c(n), cthr(n);
    for (auto& x : c) x = sparse ? 0.5f * ud(rng) : ud(rng);
    for (auto& x : cthr) x = ud(rng) < 0.5f ? 2.f : ud(rng);
    if (sparse) {
      for (auto& x : cthr) x = 0.95f;
      c[at] = sparse == 2 ? 0.96f : 0.91f;  // sparse 2: above the column thresholds only
    }
    if (n > 5) c[5] = NAN;
    std::vector<int32_t> hits(n, -7);
    const float rthr = sparse == 2 ? 0.99f : 0.9f;
    const int64_t h = ks.scan(c.data(), n, rthr, with_cols ? cthr.data() : nullptr, hits.data());
    int64_t w = 0;
    for (int64_t s = 0; s < n; ++s)
      if (c[s] >= rthr || (with_cols && c[s] >= cthr[s])) {
        if (w >= h || hits[w] != s) { printf("scan mismatch n%ld cols%d at %ld\n", n, with_cols, s); return 1; }
        ++w;
      }
    if (w != h) { printf("scan count mismatch n%ld cols%d: %ld vs %ld\n", n, with_cols, h, w); return 1; }
  }
  printf("%d cases, worst relative dot error %.2e\n", cases, worst);
  return worst < 1e-4 ? 0 : 2;
}
