// FAST-9 corners, Harris ranking, intensity-centroid orientation and a mirror-closed binary
// pattern (see keypoints.hpp). Written for the verification stage's budget of about 2 ms per
// 384-pixel image on one core: the corner test runs on 64-pixel row segments as byte planes
// (one plane per circle position), which the compiler turns into 16-byte (SSE2) or wider vector
// compares and ANDs; everything after it touches only the few thousand corners.
#include "dupscope/keypoints.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace dupscope {
namespace {

constexpr int kDisc = 15;        // radius of the orientation disc
constexpr int kPatternRadius = 13;  // comparison points before rotation (rounded: at most 14 after)
constexpr int kBox = 2;          // half-width of the box filter the comparisons read
constexpr int kBorder = kDisc + 4;  // keypoints at least this far inside a level (disc, Sobel, box)
constexpr int kBins = 32;        // orientation bins (11.25 degrees)
constexpr int kTests = 256;
constexpr double kHarrisK = 0.04;
constexpr double kPi = 3.14159265358979323846;

// The FAST circle of radius 3, clockwise from the top.
constexpr int kCircle[16][2] = {{0, -3}, {1, -3}, {2, -2}, {3, -1}, {3, 0}, {3, 1}, {2, 2}, {1, 3},
                                {0, 3},  {-1, 3}, {-2, 2}, {-3, 1}, {-3, 0}, {-3, -1}, {-2, -2}, {-1, -3}};

struct Point8 {
  int8_t x, y;
};

// 128 comparisons drawn once from an isotropic Gaussian (sigma 5.5 pixels, within the pattern
// radius) by a fixed-seed generator that gives the same pattern on every platform, each followed
// by its vertically flipped twin. A pair whose twin is itself or its own reverse is redrawn.
struct Pattern {
  std::array<std::array<Point8, 2>, kTests> tests{};
  // Rotated and rounded comparison points per orientation bin.
  std::array<std::array<std::array<Point8, 2>, kTests>, kBins> rotated{};

  Pattern() {
    uint64_t state = 0x64757073636f7065ULL;  // "dupscope"
    auto next = [&state]() {
      uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      return z ^ (z >> 31);
    };
    auto uniform = [&next]() { return (static_cast<double>(next() >> 11) + 0.5) / 9007199254740992.0; };
    auto gaussian = [&uniform]() {
      const double r = std::sqrt(-2.0 * std::log(uniform()));
      return r * std::cos(2.0 * kPi * uniform());
    };
    auto draw = [&]() {
      for (;;) {
        const int x = static_cast<int>(std::lround(5.5 * gaussian()));
        const int y = static_cast<int>(std::lround(5.5 * gaussian()));
        if (x * x + y * y <= kPatternRadius * kPatternRadius) return Point8{static_cast<int8_t>(x), static_cast<int8_t>(y)};
      }
    };
    for (int i = 0; i < kTests / 2;) {
      const Point8 p = draw(), q = draw();
      const int dx = p.x - q.x, dy = p.y - q.y;
      const bool own_twin = p.y == 0 && q.y == 0;
      const bool reverse_twin = p.x == q.x && p.y == -q.y;
      if (dx * dx + dy * dy < 4 || own_twin || reverse_twin) continue;
      tests[2 * i] = {p, q};
      tests[2 * i + 1] = {Point8{p.x, static_cast<int8_t>(-p.y)}, Point8{q.x, static_cast<int8_t>(-q.y)}};
      ++i;
    }
    for (int b = 0; b < kBins; ++b) {
      const double a = 2.0 * kPi * b / kBins, c = std::cos(a), s = std::sin(a);
      for (int t = 0; t < kTests; ++t)
        for (int e = 0; e < 2; ++e) {
          const double x = tests[t][e].x, y = tests[t][e].y;
          rotated[b][t][e] = {static_cast<int8_t>(std::lround(c * x - s * y)),
                              static_cast<int8_t>(std::lround(s * x + c * y))};
        }
    }
  }
};

const Pattern& pattern() {
  static const Pattern p;
  return p;
}

// Half-widths of the orientation disc per row offset.
const std::array<int, kDisc + 1>& disc() {
  static const std::array<int, kDisc + 1> u = [] {
    std::array<int, kDisc + 1> r{};
    for (int v = 0; v <= kDisc; ++v) r[v] = static_cast<int>(std::floor(std::sqrt((kDisc + 0.5) * (kDisc + 0.5) - v * v)));
    return r;
  }();
  return u;
}

struct Image {
  int w = 0, h = 0;
  std::vector<uint8_t> px;  // rows of w bytes
};

struct Candidate {
  int x, y;
  double rank;  // FAST score, then the Harris measure
};

// Buffers one thread reuses from image to image (no page faults after the first).
struct Workspace {
  Image prev, level;
  std::vector<uint16_t> rows, box_rows, box;
  std::vector<int> x0;
  std::vector<uint16_t> ax;
  std::vector<int16_t> scores;
  std::vector<int32_t> offsets;
  std::vector<Candidate> cand;
  std::vector<int32_t> corners;
};

// Room for `n` values in `v`, growing only: a resize that shrinks for a smaller level and grows
// again for the next image would fill the new part with zeros each time (every value read is
// written first).
template <class T>
T* room(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// This thread's buffers, behind a call the compiler cannot inline: in a shared library GCC
// recomputes a thread_local's address (a __tls_get_addr call) at each use inside the loops,
// even through a reference, which took 9% of the detector's time (perf); a plain pointer
// returned from here stays in a register.
__attribute__((noinline)) Workspace& thread_workspace() {
  thread_local Workspace ws;
  return ws;
}

// Bilinear resize with pixel centres aligned (source x = (x + 0.5) * sw / dw - 0.5), which is
// symmetric under a mirror of both images; weights in 1/256.
void resize(const Image& src, Image& dst, Workspace& ws) {
  const int sw = src.w, sh = src.h, dw = dst.w, dh = dst.h;
  room(dst.px, static_cast<size_t>(dw) * dh);
  ws.x0.resize(dw);
  ws.ax.resize(dw);
  for (int x = 0; x < dw; ++x) {
    const float s = std::clamp((x + 0.5f) * sw / dw - 0.5f, 0.0f, static_cast<float>(sw - 1));
    const int i = std::min(static_cast<int>(s), std::max(sw - 2, 0));
    ws.x0[x] = i;
    ws.ax[x] = static_cast<uint16_t>(std::lround((s - i) * 256.0f));
  }
  // Vertically first (unit stride, vectorised), then horizontally on the fewer output rows.
  ws.rows.resize(static_cast<size_t>(sw));
  uint16_t* blend = ws.rows.data();
  for (int y = 0; y < dh; ++y) {
    const float s = std::clamp((y + 0.5f) * sh / dh - 0.5f, 0.0f, static_cast<float>(sh - 1));
    const int i = std::min(static_cast<int>(s), std::max(sh - 2, 0));
    const uint16_t a = static_cast<uint16_t>(std::lround((s - i) * 256.0f));
    const uint8_t* r0 = src.px.data() + static_cast<size_t>(i) * sw;
    const uint8_t* r1 = src.px.data() + static_cast<size_t>(std::min(i + 1, sh - 1)) * sw;
    for (int x = 0; x < sw; ++x) blend[x] = static_cast<uint16_t>(r0[x] * (256 - a) + r1[x] * a);
    uint8_t* o = dst.px.data() + static_cast<size_t>(y) * dw;
    for (int x = 0; x < dw; ++x) {
      const int j = ws.x0[x];
      const uint32_t w = ws.ax[x];
      o[x] = static_cast<uint8_t>((blend[j] * (256 - w) + blend[std::min(j + 1, sw - 1)] * w + 32768u) >> 16);
    }
  }
}

// 5 x 5 box sums of `img` into ws.box (zero within kBox of the edge; keypoints never read there).
void box_sums(const Image& img, Workspace& ws) {
  const int w = img.w, h = img.h;
  // Every value is written below, the edges as zeros.
  room(ws.box_rows, static_cast<size_t>(w) * h);
  uint16_t* box = room(ws.box, static_cast<size_t>(w) * h);
  for (int y = 0; y < h; ++y) {
    const uint8_t* p = img.px.data() + static_cast<size_t>(y) * w;
    uint16_t* o = ws.box_rows.data() + static_cast<size_t>(y) * w;
    for (int x = 0; x < kBox; ++x) o[x] = o[w - 1 - x] = 0;
    for (int x = kBox; x < w - kBox; ++x) o[x] = static_cast<uint16_t>(p[x - 2] + p[x - 1] + p[x] + p[x + 1] + p[x + 2]);
  }
  std::fill_n(box, static_cast<size_t>(kBox) * w, uint16_t{0});
  std::fill_n(box + static_cast<size_t>(h - kBox) * w, static_cast<size_t>(kBox) * w, uint16_t{0});
  for (int y = kBox; y < h - kBox; ++y) {
    uint16_t* o = box + static_cast<size_t>(y) * w;
    const uint16_t* r = ws.box_rows.data() + static_cast<size_t>(y - kBox) * w;
    for (int x = 0; x < w; ++x) o[x] = static_cast<uint16_t>(r[x] + r[x + w] + r[x + 2 * w] + r[x + 3 * w] + r[x + 4 * w]);
  }
}

// Corner test on 16 pixels of one row (SSE2, the x86-64 baseline; a scalar loop elsewhere): a
// pixel is a corner when 9 contiguous circle pixels are all brighter than centre + t, or all
// darker than centre - t. Runs of 9 are found by doubling: the OR of the "not brighter" masks
// over 2, 4, 8 and then 9 neighbouring circle positions, so a zero in the last step is a run.
// A corner's score is the larger of its summed excess over the threshold on either side, plus
// one; `score` gets it for corners and 0 elsewhere. Returns one bit per corner. Reads 3 rows
// and 3 columns around the 16 pixels.
#if defined(__SSE2__)
uint32_t fast_block_sse2(const uint8_t* p, const int64_t* off, int t, int16_t* score) {
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i th = _mm_set1_epi8(static_cast<char>(t));
  const __m128i hi = _mm_adds_epu8(c, th), lo = _mm_subs_epu8(c, th), zero = _mm_setzero_si128();
  auto circle = [&](int k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + off[k])); };
  // Compass points first: a run of 9 covers two neighbouring ones of positions 0, 4, 8, 12.
  __m128i nb[16], nd[16];
  for (int k = 0; k < 16; k += 4) {
    const __m128i v = circle(k);
    nb[k] = _mm_cmpeq_epi8(_mm_subs_epu8(v, hi), zero);  // 0xFF where not brighter
    nd[k] = _mm_cmpeq_epi8(_mm_subs_epu8(lo, v), zero);  // 0xFF where not darker
  }
  const __m128i cb = _mm_and_si128(_mm_and_si128(_mm_or_si128(nb[0], nb[4]), _mm_or_si128(nb[4], nb[8])),
                                   _mm_and_si128(_mm_or_si128(nb[8], nb[12]), _mm_or_si128(nb[12], nb[0])));
  const __m128i cd = _mm_and_si128(_mm_and_si128(_mm_or_si128(nd[0], nd[4]), _mm_or_si128(nd[4], nd[8])),
                                   _mm_and_si128(_mm_or_si128(nd[8], nd[12]), _mm_or_si128(nd[12], nd[0])));
  if (_mm_movemask_epi8(_mm_and_si128(cb, cd)) == 0xFFFF) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(score), zero);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(score + 8), zero);
    return 0;
  }
  for (int k = 0; k < 16; ++k) {
    if (k % 4 == 0) continue;
    const __m128i v = circle(k);
    nb[k] = _mm_cmpeq_epi8(_mm_subs_epu8(v, hi), zero);
    nd[k] = _mm_cmpeq_epi8(_mm_subs_epu8(lo, v), zero);
  }
  __m128i none = _mm_set1_epi8(-1);
  for (__m128i* m : {nb, nd}) {
    __m128i o2[16], o4[16];
    for (int k = 0; k < 16; ++k) o2[k] = _mm_or_si128(m[k], m[(k + 1) & 15]);
    for (int k = 0; k < 16; ++k) o4[k] = _mm_or_si128(o2[k], o2[(k + 2) & 15]);
    for (int k = 0; k < 16; ++k)
      none = _mm_and_si128(none, _mm_or_si128(_mm_or_si128(o4[k], o4[(k + 4) & 15]), m[(k + 8) & 15]));
  }
  const uint32_t bits = static_cast<uint32_t>(~_mm_movemask_epi8(none)) & 0xFFFFu;
  if (!bits) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(score), zero);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(score + 8), zero);
    return 0;
  }
  __m128i b0 = zero, b1 = zero, d0 = zero, d1 = zero;
  for (int k = 0; k < 16; ++k) {
    const __m128i v = circle(k), eb = _mm_subs_epu8(v, hi), ed = _mm_subs_epu8(lo, v);
    b0 = _mm_add_epi16(b0, _mm_unpacklo_epi8(eb, zero));
    b1 = _mm_add_epi16(b1, _mm_unpackhi_epi8(eb, zero));
    d0 = _mm_add_epi16(d0, _mm_unpacklo_epi8(ed, zero));
    d1 = _mm_add_epi16(d1, _mm_unpackhi_epi8(ed, zero));
  }
  const __m128i one = _mm_set1_epi16(1), corner = _mm_xor_si128(none, _mm_set1_epi8(-1));
  const __m128i s0 = _mm_add_epi16(_mm_max_epi16(b0, d0), one), s1 = _mm_add_epi16(_mm_max_epi16(b1, d1), one);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(score), _mm_and_si128(s0, _mm_unpacklo_epi8(corner, corner)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(score + 8), _mm_and_si128(s1, _mm_unpackhi_epi8(corner, corner)));
  return bits;
}
#endif

uint32_t fast_block_portable(const uint8_t* p, const int64_t* off, int t, int16_t* score) {
  uint32_t bits = 0;
  for (int i = 0; i < 16; ++i) {
    const int c = p[i];
    uint32_t b = 0, d = 0;
    int sb = 0, sd = 0;
    for (int k = 0; k < 16; ++k) {
      const int v = p[i + off[k]];
      b |= static_cast<uint32_t>(v > c + t) << k;
      d |= static_cast<uint32_t>(v < c - t) << k;
      sb += std::max(v - std::min(c + t, 255), 0);
      sd += std::max(std::max(c - t, 0) - v, 0);
    }
    bool is_corner = false;
    for (uint32_t m : {b, d}) {
      uint32_t r = m | (m << 16);
      const uint32_t ring = r;
      r &= r >> 1;
      r &= r >> 2;
      r &= r >> 4;
      r &= ring >> 8;
      is_corner |= (r & 0xFFFFu) != 0;
    }
    score[i] = static_cast<int16_t>(is_corner ? std::max(sb, sd) + 1 : 0);
    bits |= static_cast<uint32_t>(is_corner) << i;
  }
  return bits;
}

// Sorts strongest first, ties by raster position (a deterministic order).
void keep_strongest(std::vector<Candidate>& c, size_t n, int w) {
  auto stronger = [w](const Candidate& a, const Candidate& b) {
    if (a.rank != b.rank) return a.rank > b.rank;
    return static_cast<int64_t>(a.y) * w + a.x < static_cast<int64_t>(b.y) * w + b.x;
  };
  if (c.size() > n) {
    std::nth_element(c.begin(), c.begin() + static_cast<int64_t>(n), c.end(), stronger);
    c.resize(n);
  }
  std::sort(c.begin(), c.end(), stronger);
}

double harris(const Image& img, int x, int y) {
  const int64_t s = img.w;
  // Integer sums (each at most 49 * 1020^2 < 2^31 in magnitude): the same values the double sums
  // gave, without a conversion per pixel.
  int32_t ia = 0, ib = 0, ic = 0;
  for (int dy = -3; dy <= 3; ++dy) {
    const uint8_t* p = img.px.data() + (y + dy) * s + x - 3;
    for (int dx = 0; dx < 7; ++dx, ++p) {
      const int ix = (p[-s + 1] + 2 * p[1] + p[s + 1]) - (p[-s - 1] + 2 * p[-1] + p[s - 1]);
      const int iy = (p[s - 1] + 2 * p[s] + p[s + 1]) - (p[-s - 1] + 2 * p[-s] + p[-s + 1]);
      ia += ix * ix;
      ib += iy * iy;
      ic += ix * iy;
    }
  }
  constexpr double norm = 1.0 / (1020.0 * 1020.0 * 49.0);
  const double a = ia * norm, b = ib * norm, c = ic * norm;
  return a * b - c * c - kHarrisK * (a + b) * (a + b);
}

// The intensity centroid's direction over the disc of radius kDisc, as one of kBins bins.
#if defined(__SSE2__)
struct DiscMasks {
  __m128i left[kDisc + 1], right[kDisc + 1];  // columns -16..-1 and 0..15 inside the disc, per row offset
  __m128i weight[4];                          // the column offsets -16..15 as int16
  DiscMasks() {
    const auto& u = disc();
    for (int v = 0; v <= kDisc; ++v) {
      alignas(16) uint8_t l[16], r[16];
      for (int i = 0; i < 16; ++i) {
        l[i] = (16 - i) <= u[v] ? 0xFF : 0;
        r[i] = i <= u[v] ? 0xFF : 0;
      }
      left[v] = _mm_load_si128(reinterpret_cast<const __m128i*>(l));
      right[v] = _mm_load_si128(reinterpret_cast<const __m128i*>(r));
    }
    for (int q = 0; q < 4; ++q) {
      alignas(16) int16_t w[8];
      for (int i = 0; i < 8; ++i) w[i] = static_cast<int16_t>(q * 8 + i - 16);
      weight[q] = _mm_load_si128(reinterpret_cast<const __m128i*>(w));
    }
  }
};

int64_t bin_of(int64_t m10, int64_t m01);

int orientation_bin_sse2(const Image& img, int x, int y) {
  static const DiscMasks masks;
  const int64_t s = img.w;
  const uint8_t* centre = img.px.data() + y * s + x;
  const __m128i zero = _mm_setzero_si128();
  __m128i moment = zero;
  int64_t m01 = 0;
  for (int v = -kDisc; v <= kDisc; ++v) {
    const uint8_t* r = centre + v * s;
    const int av = std::abs(v);
    const __m128i a = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r - 16)), masks.left[av]);
    const __m128i b = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r)), masks.right[av]);
    const __m128i sum = _mm_add_epi64(_mm_sad_epu8(a, zero), _mm_sad_epu8(b, zero));
    m01 += static_cast<int64_t>(v) * (_mm_cvtsi128_si32(sum) + _mm_cvtsi128_si32(_mm_srli_si128(sum, 8)));
    moment = _mm_add_epi32(moment, _mm_add_epi32(
        _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi8(a, zero), masks.weight[0]),
                      _mm_madd_epi16(_mm_unpackhi_epi8(a, zero), masks.weight[1])),
        _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi8(b, zero), masks.weight[2]),
                      _mm_madd_epi16(_mm_unpackhi_epi8(b, zero), masks.weight[3]))));
  }
  alignas(16) int32_t lanes[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), moment);
  return static_cast<int>(bin_of(static_cast<int64_t>(lanes[0]) + lanes[1] + lanes[2] + lanes[3], m01));
}
#endif

int orientation_bin_portable(const Image& img, int x, int y) {
  const auto& u = disc();
  const int64_t s = img.w;
  const uint8_t* centre = img.px.data() + y * s + x;
  int64_t m10 = 0, m01 = 0;
  for (int v = -kDisc; v <= kDisc; ++v) {
    const int half = u[std::abs(v)];
    const uint8_t* r = centre + v * s;
    int64_t sum = 0, moment = 0;
    for (int d = -half; d <= half; ++d) {
      sum += r[d];
      moment += d * r[d];
    }
    m10 += moment;
    m01 += v * sum;
  }
  return static_cast<int>(bin_of(m10, m01));
}

int64_t bin_of(int64_t m10, int64_t m01) {
  const double angle = std::atan2(static_cast<double>(m01), static_cast<double>(m10));
  const int64_t bin = std::lround(angle * kBins / (2.0 * kPi));
  return ((bin % kBins) + kBins) % kBins;
}

// The comparison points of every orientation bin as offsets into a level `w` pixels wide.
void pattern_offsets(int w, std::vector<int32_t>& out) {
  const auto& rot = pattern().rotated;
  out.resize(static_cast<size_t>(kBins) * kTests * 2);
  for (int b = 0; b < kBins; ++b)
    for (int t = 0; t < kTests; ++t)
      for (int e = 0; e < 2; ++e) out[(b * kTests + t) * 2 + e] = rot[b][t][e].y * w + rot[b][t][e].x;
}

void describe(const uint16_t* centre, const int32_t* offsets, uint8_t* out) {
  for (int byte = 0; byte < kTests / 8; ++byte) {
    const int32_t* o = offsets + byte * 16;
    uint32_t bits = 0;
    for (int b = 0; b < 8; ++b) bits |= static_cast<uint32_t>(centre[o[2 * b]] < centre[o[2 * b + 1]]) << b;
    out[byte] = static_cast<uint8_t>(bits);
  }
}

}  // namespace

void detect_and_describe(const uint8_t* grey, int width, int height, int64_t stride,
                         const KeypointConfig& config, Keypoints& out) {
  if (width <= 0 || height <= 0 || stride < width)
    throw std::invalid_argument("image size must be positive and rows at least width bytes apart");
  if (config.features < 0 || config.levels < 1 || !(config.scale > 1.0f) || config.fast_threshold < 1 ||
      config.fast_threshold > 254)
    throw std::invalid_argument("keypoints: features >= 0, levels >= 1, scale > 1, fast threshold in 1..254");
  out = Keypoints{};
  const double f = 1.0 / config.scale;
  const double first = config.features * (1.0 - f) / (1.0 - std::pow(f, config.levels));
  int given = 0;
#if defined(__SSE2__)
  const bool simd = !config.portable;
#else
  const bool simd = false;
#endif
  auto fast_block = [simd](const uint8_t* p, const int64_t* off, int t, int16_t* score) {
#if defined(__SSE2__)
    if (simd) return fast_block_sse2(p, off, t, score);
#endif
    return fast_block_portable(p, off, t, score);
  };
  auto orientation_bin = [simd](const Image& img, int x, int y) {
#if defined(__SSE2__)
    if (simd) return orientation_bin_sse2(img, x, y);
#endif
    return orientation_bin_portable(img, x, y);
  };
  Workspace& ws = thread_workspace();
  std::vector<Candidate>& cand = ws.cand;
  std::vector<int32_t>& corners = ws.corners;
  Image& prev = ws.prev;
  Image& level = ws.level;
  std::vector<int16_t>& scores = ws.scores;
  std::vector<int32_t>& offsets = ws.offsets;
  for (int l = 0; l < config.levels; ++l) {
    const int quota = l + 1 == config.levels ? std::max(config.features - given, 0)
                                             : static_cast<int>(std::lround(first * std::pow(f, l)));
    given += quota;
    const int lw = static_cast<int>(std::lround(width * std::pow(f, l)));
    const int lh = static_cast<int>(std::lround(height * std::pow(f, l)));
    if (lw <= 2 * kBorder || lh <= 2 * kBorder) break;
    level.w = lw;
    level.h = lh;
    if (l == 0) {
      room(level.px, static_cast<size_t>(lw) * lh);
      for (int y = 0; y < lh; ++y) std::memcpy(level.px.data() + static_cast<size_t>(y) * lw, grey + y * stride, lw);
    } else {
      resize(prev, level, ws);
    }
    if (quota > 0) {
      // The scores are written where the suppression below reads them, and nowhere else: the
      // tested pixels by the corner test, the ring around them as zeros (no fill of the level).
      room(scores, static_cast<size_t>(lw) * lh);
      std::fill_n(scores.data() + static_cast<size_t>(kBorder - 1) * lw, lw, int16_t{0});
      std::fill_n(scores.data() + static_cast<size_t>(lh - kBorder) * lw, lw, int16_t{0});
      int64_t off[16];
      for (int k = 0; k < 16; ++k) off[k] = kCircle[k][1] * static_cast<int64_t>(lw) + kCircle[k][0];
      // Corner positions (y * lw + x) written through a pointer into room for every tested
      // pixel: a push_back per corner cost 8% of the detector's time (perf).
      int32_t* const first = room(corners, static_cast<size_t>(lh - 2 * kBorder) * (lw - 2 * kBorder + 16));
      int32_t* found = first;
      for (int y = kBorder; y < lh - kBorder; ++y) {
        const uint8_t* row = level.px.data() + static_cast<size_t>(y) * lw;
        int16_t* s = scores.data() + static_cast<size_t>(y) * lw;
        s[kBorder - 1] = s[lw - kBorder] = 0;
        // Blocks of 16 may run past the last column tested (never past the row: kBorder > 16 + 3).
        for (int x = kBorder; x < lw - kBorder; x += 16) {
          uint32_t bits = fast_block(row + x, off, config.fast_threshold, s + x);
          const int left = lw - kBorder - x;
          if (left < 16) {
            bits &= (1u << left) - 1;
            std::fill(s + x + left, s + x + 16, int16_t{0});
          }
          for (; bits; bits &= bits - 1) *found++ = y * lw + x + __builtin_ctz(bits);
        }
      }
      cand.clear();
      for (const int32_t* at = first; at != found; ++at) {
        const int16_t* s = scores.data() + *at;
        const int v = s[0];
        // 3 x 3 non-maximum suppression; of equal neighbours the first in raster order stays.
        const int16_t* up = s - lw;
        const int16_t* down = s + lw;
        if (v <= up[-1] || v <= up[0] || v <= up[1] || v <= s[-1]) continue;
        if (v < s[1] || v < down[-1] || v < down[0] || v < down[1]) continue;
        cand.push_back({*at % lw, *at / lw, static_cast<double>(v)});
      }
      keep_strongest(cand, 2 * static_cast<size_t>(quota), lw);
      for (auto& c : cand) c.rank = harris(level, c.x, c.y);
      keep_strongest(cand, static_cast<size_t>(quota), lw);
      if (!cand.empty()) {
        box_sums(level, ws);
        const std::vector<uint16_t>& box = ws.box;
        pattern_offsets(lw, offsets);
        const double sx = static_cast<double>(width) / lw, sy = static_cast<double>(height) / lh;
        const size_t base = out.response.size();
        out.descriptors.resize((base + cand.size()) * (kTests / 8));
        for (size_t i = 0; i < cand.size(); ++i) {
          const auto& c = cand[i];
          out.points.push_back(static_cast<float>((c.x + 0.5) * sx - 0.5));
          out.points.push_back(static_cast<float>((c.y + 0.5) * sy - 0.5));
          out.response.push_back(static_cast<float>(c.rank));
          out.level.push_back(l);
          describe(box.data() + static_cast<size_t>(c.y) * lw + c.x,
                   offsets.data() + static_cast<size_t>(orientation_bin(level, c.x, c.y)) * kTests * 2,
                   out.descriptors.data() + (base + i) * (kTests / 8));
        }
      }
    }
    std::swap(prev, level);
  }
}

const char* keypoint_kernel() {
#if defined(__SSE2__)
  return "sse2";
#else
  return "portable";
#endif
}

void mirror_descriptors(const uint8_t* in, int64_t n, uint8_t* out) {
  // Comparison 2i and its flipped twin 2i + 1 share a byte: swap each such bit pair.
  for (int64_t i = 0; i < n * (kTests / 8); ++i)
    out[i] = static_cast<uint8_t>(((in[i] & 0x55) << 1) | ((in[i] >> 1) & 0x55));
}

}  // namespace dupscope
