#include "dupscope/normalize.hpp"

#include <cmath>

#include "dupscope/half.hpp"

namespace dupscope {

namespace {

template <class Load>
int64_t normalize_impl(Load load, int64_t n, int64_t d, float* out) {
  int64_t first_bad = -1;
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + i * d;
    double ss = 0.0;
    bool finite = true;
    for (int64_t k = 0; k < d; ++k) {
      const float v = load(i, k);
      finite = finite && std::isfinite(v);
      o[k] = v;
      ss += static_cast<double>(v) * v;
    }
    if (!finite) {
      if (first_bad < 0) first_bad = i;
      continue;
    }
    const double norm = std::sqrt(ss);
    if (norm > 0.0) {
      const double inv = 1.0 / norm;
      for (int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(o[k] * inv);
    }
  }
  return first_bad;
}

}  // namespace

int64_t normalize_rows(const float* in, int64_t n, int64_t d, int64_t in_stride, float* out) {
  return normalize_impl([&](int64_t i, int64_t k) { return in[i * in_stride + k]; }, n, d, out);
}

int64_t normalize_rows(const uint16_t* in, int64_t n, int64_t d, int64_t in_stride, float* out) {
  return normalize_impl(
      [&](int64_t i, int64_t k) { return half_to_float(in[i * in_stride + k]); }, n, d, out);
}

}  // namespace dupscope
