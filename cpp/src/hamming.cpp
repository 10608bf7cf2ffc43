#include "dupscope/hamming.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "dupscope/cpu_features.hpp"
#include "hamming_internal.hpp"

namespace dupscope {
namespace {

using hamming_detail::Best2;

// The distances are computed from 64-bit words; on x86 the hardware popcount is picked at run
// time where the CPU has it (every x86-64 CPU since 2008), the portable bit count elsewhere.
// A row of distances is computed first (a tight loop the compiler unrolls), then offered to
// the row's best two and to each column's: after the first rows few offers change anything, so
// the branches are well predicted.
#if defined(DUPSCOPE_X86) && defined(__GNUC__)
__attribute__((target_clones("popcnt", "default")))
#endif
void distances(const uint64_t* a, int64_t na, const uint64_t* b, int64_t nb, int words,
               Best2* fwd, Best2* back) {
  std::vector<int32_t> row(static_cast<size_t>(nb));
  for (int64_t i = 0; i < na; ++i) {
    const uint64_t* x = a + i * words;
    if (words == 4) {
      const uint64_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
      for (int64_t j = 0; j < nb; ++j) {
        const uint64_t* y = b + j * 4;
        row[j] = __builtin_popcountll(x0 ^ y[0]) + __builtin_popcountll(x1 ^ y[1]) +
                 __builtin_popcountll(x2 ^ y[2]) + __builtin_popcountll(x3 ^ y[3]);
      }
    } else {
      for (int64_t j = 0; j < nb; ++j) {
        const uint64_t* y = b + j * words;
        int32_t d = 0;
        for (int w = 0; w < words; ++w) d += __builtin_popcountll(x[w] ^ y[w]);
        row[j] = d;
      }
    }
    Best2 f;
    for (int64_t j = 0; j < nb; ++j) {
      const int32_t d = row[j];
      if (d < f.d2) f.offer(d, static_cast<int32_t>(j));
      if (d < back[j].d2) back[j].offer(d, static_cast<int32_t>(i));
    }
    fwd[i] = f;
  }
}

}  // namespace

std::vector<std::string> hamming_kernels() {
  std::vector<std::string> out{"portable"};
#if defined(DUPSCOPE_X86)
  if (simd_default() >= SimdLevel::AVX2) out.emplace_back("avx2");
  if (simd_default() == SimdLevel::AVX512) {
    out.emplace_back("avx512");
    if (hamming_detail::cpu_has_vpopcntdq()) out.emplace_back("avx512-vpopcnt");
  }
#endif
  return out;
}

void mutual_ratio_matches(const uint8_t* a, int64_t na, const uint8_t* b, int64_t nb, int bytes,
                          float ratio, std::vector<int32_t>& ia, std::vector<int32_t>& ib,
                          const std::string& kernel) {
  if (bytes <= 0 || bytes % 8 != 0)
    throw std::invalid_argument("descriptor length must be a positive multiple of 8 bytes");
  if (na == 0 || nb == 0) return;
  const int words = bytes / 8;
  // Copies into 8-byte aligned words (the caller's rows need not be aligned).
  std::vector<uint64_t> wa(static_cast<size_t>(na) * words), wb(static_cast<size_t>(nb) * words);
  std::memcpy(wa.data(), a, static_cast<size_t>(na) * bytes);
  std::memcpy(wb.data(), b, static_cast<size_t>(nb) * bytes);
  std::vector<Best2> fwd(na), back(nb);
  const std::vector<std::string> ok = hamming_kernels();
  std::string use = kernel == "auto" ? ok.back() : kernel;
  if (std::find(ok.begin(), ok.end(), use) == ok.end())
    throw std::invalid_argument("Hamming kernel '" + kernel + "' is unknown or not supported here");
  if (words != 4) use = "portable";
#if defined(DUPSCOPE_X86)
  if (use != "portable") {
    // b transposed into word planes padded to the kernel's step: 8 columns for AVX2, each block
    // in the order 0 2 4 6 1 3 5 7 (see hamming_avx2.cpp), 16 in order for AVX-512.
    const bool avx2 = use == "avx2";
    const int64_t step = avx2 ? 8 : 16;
    const int64_t ldb = (nb + step - 1) / step * step;
    static const int avx2_slot[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // column offset -> position in its block
    std::vector<uint64_t> bt(static_cast<size_t>(4 * ldb), 0);
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t at = avx2 ? (j & ~int64_t{7}) + avx2_slot[j & 7] : j;
      for (int w = 0; w < 4; ++w) bt[w * ldb + at] = wb[j * 4 + w];
    }
    if (avx2)
      hamming_detail::best_two_avx2(wa.data(), na, bt.data(), nb, ldb, fwd.data(), back.data());
    else if (use == "avx512-vpopcnt")
      hamming_detail::best_two_avx512_vpopcnt(wa.data(), na, bt.data(), nb, ldb, fwd.data(), back.data());
    else
      hamming_detail::best_two_avx512(wa.data(), na, bt.data(), nb, ldb, fwd.data(), back.data());
  } else
#endif
  distances(wa.data(), na, wb.data(), nb, words, fwd.data(), back.data());
  for (int64_t i = 0; i < na; ++i) {
    if (!fwd[i].passes(ratio)) continue;
    const int32_t j = fwd[i].idx;
    if (back[j].idx == i && back[j].passes(ratio)) {
      ia.push_back(static_cast<int32_t>(i));
      ib.push_back(j);
    }
  }
}

}  // namespace dupscope
