// The one binding file: exposes the plain C++ core as dupscope._core. Shape and dtype checks
// live in one helper; every long call releases the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include "dupscope/contrast.hpp"
#include "dupscope/cpu_features.hpp"
#include "dupscope/cuda_tiles.hpp"
#include "dupscope/engine.hpp"
#include "dupscope/grouping.hpp"
#include "dupscope/hamming.hpp"
#include "dupscope/huge_pages.hpp"
#include "dupscope/kernels.hpp"
#include "dupscope/keypoints.hpp"
#include "dupscope/lowp.hpp"
#include "dupscope/model_input.hpp"
#include "dupscope/normalize.hpp"

namespace py = pybind11;
using namespace dupscope;

namespace {

// Whether `a` holds T: by kind, size and byte order, not by the dtype object's identity (an
// array unpickled from Ray's object store carries an equal dtype that is another object).
template <class T>
bool has_dtype(const py::array& a) {
  const py::dtype want = py::dtype::of<T>(), got = a.dtype();
  return got.kind() == want.kind() && got.itemsize() == want.itemsize() &&
         (got.itemsize() == 1 || got.byteorder() == '=' || got.byteorder() == want.byteorder() ||
          got.byteorder() == (py::module_::import("sys").attr("byteorder").cast<std::string>() == "little" ? '<' : '>'));
}

// Checks a 2-D C-contiguous array and returns (rows, cols).
std::pair<int64_t, int64_t> check_matrix(const py::array& a, const char* name) {
  if (a.ndim() != 2)
    throw py::value_error(std::string(name) + " must be 2-D (N x D), got " +
                          std::to_string(a.ndim()) + "-D");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) +
                          " must be C-contiguous: pass numpy.ascontiguousarray(x)");
  return {a.shape(0), a.shape(1)};
}

py::array_t<float> normalize(const py::array& emb) {
  auto [n, d] = check_matrix(emb, "embeddings");
  py::array_t<float> out({n, d});
  int64_t bad = -1;
  if (has_dtype<float>(emb)) {
    const float* in = static_cast<const float*>(emb.data());
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    bad = normalize_rows(in, n, d, d, o);
  } else if (emb.dtype().kind() == 'f' && emb.dtype().itemsize() == 2) {
    const uint16_t* in = static_cast<const uint16_t*>(emb.data());
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    bad = normalize_rows(in, n, d, d, o);
  } else {
    throw py::type_error("embeddings must be float32 or float16, got " +
                         std::string(py::str(emb.dtype())) + ": use x.astype(numpy.float32)");
  }
  if (bad >= 0)
    throw py::value_error("embeddings row " + std::to_string(bad) +
                          " contains NaN or infinity: fix or drop that row");
  return out;
}

// "bf16" (the fastest hardware kernel here: AMX, else AVX512_BF16), "bf16-avx512", "bf16-amx"
// or "bf16-emulated".
Bf16Kernel parse_bf16_kernel(const std::string& name, const char* what) {
  if (name == "bf16-emulated") return Bf16Kernel::Emulated;
  if (name == "bf16-avx512") return Bf16Kernel::Avx512;
  if (name == "bf16-amx") return Bf16Kernel::Amx;
  if (name == "bf16") {
    const Bf16Kernel k = best_bf16_kernel();
    if (k == Bf16Kernel::Emulated) throw py::value_error("this CPU has no AVX512_BF16 (use bf16-emulated or fp32)");
    return k;
  }
  throw py::value_error(std::string(what) + " must be bf16, bf16-avx512, bf16-amx or bf16-emulated, got '" + name + "'");
}

// "int8" (the fastest hardware kernel here: AMX, else AVX512_VNNI), "int8-vnni", "int8-amx" or
// "int8-emulated".
Int8Kernel parse_int8_kernel(const std::string& name, const char* what) {
  if (name == "int8-emulated") return Int8Kernel::Emulated;
  if (name == "int8-vnni") return Int8Kernel::Vnni;
  if (name == "int8-amx") return Int8Kernel::Amx;
  if (name == "int8") {
    const Int8Kernel k = best_int8_kernel();
    if (k == Int8Kernel::Emulated) throw py::value_error("this CPU has no AVX512_VNNI (use int8-emulated or fp32)");
    return k;
  }
  throw py::value_error(std::string(what) + " must be int8, int8-vnni, int8-amx or int8-emulated, got '" + name + "'");
}

class PyJob {
 public:
  PyJob(py::array_t<float, py::array::c_style> normalized, py::object valid, int64_t tile, int k,
        int threads, const std::string& simd, const std::string& device,
        const std::string& output, py::object dense_out, int queue_chunks, std::array<int64_t, 4> rect,
        const std::string& precision, int candidates, const std::string& selection) {
    auto [n, d] = check_matrix(normalized, "normalized");
    JobOptions opt;
    if (selection != "tile" && selection != "candidates")
      throw py::value_error("selection must be 'tile' or 'candidates', got '" + selection + "'");
    opt.candidate_lists = selection == "candidates";
    if (precision.rfind("bf16", 0) == 0) {
      opt.precision = Precision::Bf16;
      opt.bf16_kernel = parse_bf16_kernel(precision, "precision");
      opt.candidates = candidates;
    } else if (precision.rfind("int8", 0) == 0) {
      opt.precision = Precision::Int8;
      opt.int8_kernel = parse_int8_kernel(precision, "precision");
    } else if (precision != "fp32") {
      throw py::value_error("precision must be fp32, bf16, bf16-avx512, bf16-amx, bf16-emulated, int8, int8-vnni, "
                            "int8-amx or int8-emulated, got '" + precision + "'");
    }
    opt.rect_row_begin = rect[0];
    opt.rect_row_end = rect[1];
    opt.rect_col_begin = rect[2];
    opt.rect_col_end = rect[3];
    opt.tile = tile;
    opt.k = k;
    opt.threads = threads;
    opt.simd = simd.empty() ? simd_default() : parse_simd(simd);
    // "cpu", "cuda" or "cuda:N" (parsed once in Python: dupscope.device).
    opt.use_cuda = device == "cuda" || device.rfind("cuda:", 0) == 0;
    if (!opt.use_cuda && device != "cpu")
      throw py::value_error("device must be 'cpu', 'cuda' or 'cuda:N', got '" + device + "'");
    if (device.rfind("cuda:", 0) == 0) {
      try {
        opt.cuda_device = std::stoi(device.substr(5));
      } catch (const std::exception&) {
        throw py::value_error("device must be 'cpu', 'cuda' or 'cuda:N', got '" + device + "'");
      }
    }
    if (output == "none") opt.output = Output::None;
    else if (output == "dense") opt.output = Output::Dense;
    else if (output == "chunks") opt.output = Output::Chunks;
    else throw py::value_error("output must be none, dense or chunks");
    opt.queue_chunks = queue_chunks;
    if (opt.output == Output::Dense) {
      dense_ = py::array_t<uint16_t, py::array::c_style>::ensure(dense_out);
      if (!dense_ || dense_.ndim() != 2 || dense_.shape(0) != n || dense_.shape(1) != n)
        throw py::value_error("dense_out must be a C-contiguous uint16 array of shape (N, N)");
      opt.dense_out = dense_.mutable_data();
    }
    std::vector<uint8_t> v;
    if (!valid.is_none()) {
      auto va = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(valid);
      if (!va || va.ndim() != 1 || va.shape(0) != n)
        throw py::value_error("valid must be a 1-D boolean array of length N");
      v.assign(va.data(), va.data() + n);
    }
    const float* data = normalized.data();
    {
      py::gil_scoped_release release;
      job_ = std::make_unique<SimilarityJob>(data, n, d, v.empty() ? nullptr : v.data(), opt);
    }
    tile_ = tile;
    n_ = n;
    k_ = k;
  }

  void start() { job_->start(); }

  // Returns None on time-out, False when all chunks were popped, else (row_block, col_block, chunk).
  py::object pop(int timeout_ms) {
    py::array_t<uint16_t> chunk({tile_, tile_});
    ChunkInfo info;
    int r;
    uint16_t* dst = chunk.mutable_data();
    {
      py::gil_scoped_release release;
      r = job_->pop(dst, info, timeout_ms);
    }
    if (r < 0) return py::bool_(false);
    if (r == 0) return py::none();
    return py::make_tuple(info.row_block, info.col_block, chunk);
  }

  void wait() {
    py::gil_scoped_release release;
    job_->wait();
  }

  py::tuple topk() {
    py::array_t<int32_t> idx({n_, static_cast<int64_t>(k_)});
    py::array_t<uint16_t> sim({n_, static_cast<int64_t>(k_)});
    int32_t* pi = idx.mutable_data();
    uint16_t* ps = sim.mutable_data();
    {
      py::gil_scoped_release release;
      job_->topk(pi, ps);
    }
    return py::make_tuple(idx, sim);
  }

  py::tuple topk_values() {
    py::array_t<int32_t> idx({n_, static_cast<int64_t>(k_)});
    py::array_t<float> sim({n_, static_cast<int64_t>(k_)});
    int32_t* pi = idx.mutable_data();
    float* ps = sim.mutable_data();
    {
      py::gil_scoped_release release;
      job_->topk_values(pi, ps);
    }
    return py::make_tuple(idx, sim);
  }

  std::unique_ptr<SimilarityJob> job_;

 private:
  py::array_t<uint16_t, py::array::c_style> dense_;
  int64_t tile_ = 0, n_ = 0;
  int k_ = 0;
};

// Mutual ratio-test matches of two uint8 descriptor matrices, as two int64 index arrays.
py::tuple hamming_matches(const py::array& a, const py::array& b, float ratio, const std::string& kernel) {
  auto [na, da] = check_matrix(a, "a");
  auto [nb, db] = check_matrix(b, "b");
  if (!has_dtype<uint8_t>(a) || !has_dtype<uint8_t>(b))
    throw py::type_error("descriptors must be uint8");
  if (da != db)
    throw py::value_error("descriptors have different lengths: " + std::to_string(da) + " and " +
                          std::to_string(db) + " bytes");
  if (!(ratio > 0.0f && ratio <= 1.0f)) throw py::value_error("ratio must be in (0, 1]");
  // An unknown or unsupported kernel: std::invalid_argument from the core, a ValueError here.
  std::vector<int32_t> ia, ib;
  const auto* pa = static_cast<const uint8_t*>(a.data());
  const auto* pb = static_cast<const uint8_t*>(b.data());
  {
    py::gil_scoped_release release;
    mutual_ratio_matches(pa, na, pb, nb, static_cast<int>(da), ratio, ia, ib, kernel);
  }
  py::array_t<int64_t> oa(static_cast<py::ssize_t>(ia.size())), ob(static_cast<py::ssize_t>(ib.size()));
  std::copy(ia.begin(), ia.end(), oa.mutable_data());
  std::copy(ib.begin(), ib.end(), ob.mutable_data());
  return py::make_tuple(oa, ob);
}

// A contiguous 1-D array of one dtype, or a TypeError naming it.
template <typename T>
const T* vector_of(const py::array& x, const char* name, int64_t length = -1) {
  if (x.ndim() != 1 || !(x.flags() & py::array::c_style) || !has_dtype<T>(x))
    throw py::type_error(std::string(name) + " must be a contiguous 1-D array of " +
                         std::string(py::str(py::dtype::of<T>())));
  if (length >= 0 && x.shape(0) != length) throw py::value_error(std::string(name) + " has the wrong length");
  return static_cast<const T*>(x.data());
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::tuple linkage_merges_py(int64_t n, const py::array& a, const py::array& b, const py::array& s) {
  const int64_t m = a.shape(0);
  const int32_t* pa = vector_of<int32_t>(a, "a");
  const int32_t* pb = vector_of<int32_t>(b, "b", m);
  const float* ps = vector_of<float>(s, "s", m);
  std::vector<Merge> merges;
  {
    py::gil_scoped_release release;
    merges = linkage_merges(n, pa, pb, ps, m);
  }
  std::vector<int32_t> u(merges.size()), v(merges.size());
  std::vector<float> level(merges.size());
  for (size_t q = 0; q < merges.size(); ++q) u[q] = merges[q].u, v[q] = merges[q].v, level[q] = merges[q].level;
  return py::make_tuple(to_array(u), to_array(v), to_array(level));
}

py::array_t<int32_t> replay_merges_py(int64_t n, const py::array& u, const py::array& v, const py::array& level,
                                      float threshold, const py::array& skip_a, const py::array& skip_b) {
  const int64_t m = u.shape(0), k = skip_a.shape(0);
  const int32_t* pu = vector_of<int32_t>(u, "u");
  const int32_t* pv = vector_of<int32_t>(v, "v", m);
  const float* pl = vector_of<float>(level, "level", m);
  const int32_t* sa = vector_of<int32_t>(skip_a, "skip_a");
  const int32_t* sb = vector_of<int32_t>(skip_b, "skip_b", k);
  std::vector<Merge> merges(static_cast<size_t>(m));
  for (int64_t q = 0; q < m; ++q) {
    merges[q] = {pu[q], pv[q], pl[q]};
    if (q && !(pl[q] <= pl[q - 1])) throw py::value_error("merge levels must not increase");
  }
  std::vector<int32_t> g;
  {
    py::gil_scoped_release release;
    g = replay_merges(n, merges.data(), m, threshold, sa, sb, k);
  }
  return to_array(g);
}

py::dict build_info() {
  py::dict d;
  d["version"] = DUPSCOPE_VERSION;
  d["compiler"] = DUPSCOPE_CXX_COMPILER;
  d["simd_compiled"] = std::string(DUPSCOPE_SIMD_COMPILED);
  py::list sup;
  for (auto l : simd_supported()) sup.append(simd_name(l));
  d["simd_supported"] = sup;
  d["huge_pages"] = huge_pages_wanted();  // large buffers ask for 2 MB pages (DUPSCOPE_HUGE_PAGES=0: no)
  try {
    d["simd_selected"] = simd_name(simd_default());
  } catch (const std::exception& e) {
    d["simd_selected"] = std::string("error: ") + e.what();
  }
  try {
    py::list hk;
    for (const auto& k : hamming_kernels()) hk.append(k);
    d["hamming_kernels"] = hk;
  } catch (const std::exception& e) {
    d["hamming_kernels"] = std::string("error: ") + e.what();
  }
  d["keypoint_kernel"] = std::string(keypoint_kernel());
  {
    py::list lk;
    for (const auto& k : lowp_kernels()) lk.append(k);
    for (const auto& k : int8_kernels()) lk.append(k);
    d["lowp_kernels"] = lk;
  }
  {
    py::list v;
    for (const auto& k : cpu_int8_dot()) v.append(k);
    d["cpu_int8_dot"] = v;
    d["cpu_vendor"] = cpu_vendor();
  }
  d["threads"] = "std::thread";
  d["hardware_concurrency"] = std::thread::hardware_concurrency();
#if defined(DUPSCOPE_HAS_CUDA)
  d["cuda_compiled"] = true;
  d["cuda_version"] = DUPSCOPE_CUDA_VERSION;
  d["cuda_architectures"] = DUPSCOPE_CUDA_ARCHS;
#else
  d["cuda_compiled"] = false;
#endif
  std::string why;
  const bool ok = cuda::available(&why);
  d["cuda_available"] = ok;
  d["cuda_device"] = ok ? cuda::device_name() : why;
  return d;
}

// Keypoints of a 2-D uint8 grey image: (points (K, 2) float32, descriptors (K, 32) uint8,
// response (K,) float32, level (K,) int32).
// A 2-D uint8 grey image whose rows are contiguous (what the keypoint and contrast code read).
void check_grey(const py::array& grey) {
  if (grey.ndim() != 2 || !has_dtype<uint8_t>(grey))
    throw py::type_error("grey must be a 2-D uint8 array");
  if (grey.strides(1) != 1 || grey.strides(0) < grey.shape(1))
    throw py::value_error("grey must have contiguous rows, try numpy.ascontiguousarray");
}

py::tuple keypoints_py(const py::array& grey, int features, int levels, float scale, int fast_threshold,
                       const std::string& kernel) {
  if (kernel != "auto" && kernel != "portable" && kernel != keypoint_kernel())
    throw py::value_error("kernel must be 'auto', 'portable' or '" + std::string(keypoint_kernel()) + "'");
  check_grey(grey);
  const int h = static_cast<int>(grey.shape(0)), w = static_cast<int>(grey.shape(1));
  const auto* px = static_cast<const uint8_t*>(grey.data());
  const int64_t stride = grey.strides(0);
  KeypointConfig cfg{features, levels, scale, fast_threshold, kernel == "portable"};
  Keypoints k;
  {
    py::gil_scoped_release release;
    // A bad config or an empty image: std::invalid_argument, a ValueError here.
    detect_and_describe(px, w, h, stride, cfg, k);
  }
  const auto n = static_cast<py::ssize_t>(k.size());
  py::array_t<float> pts({n, py::ssize_t{2}});
  py::array_t<uint8_t> desc({n, py::ssize_t{32}});
  std::copy(k.points.begin(), k.points.end(), pts.mutable_data());
  std::copy(k.descriptors.begin(), k.descriptors.end(), desc.mutable_data());
  return py::make_tuple(pts, desc, to_array(k.response), to_array(k.level));
}

py::array_t<uint8_t> normalise_contrast_py(const py::array& grey, float clip_limit, int tiles) {
  // An empty array first: numpy may give a zero-width one any stride.
  if (grey.ndim() == 2 && (grey.shape(0) == 0 || grey.shape(1) == 0))
    throw py::value_error("grey's size must be positive");
  check_grey(grey);
  const int h = static_cast<int>(grey.shape(0)), w = static_cast<int>(grey.shape(1));
  py::array_t<uint8_t> out({static_cast<py::ssize_t>(h), static_cast<py::ssize_t>(w)});
  const auto* px = static_cast<const uint8_t*>(grey.data());
  const int64_t stride = grey.strides(0);
  uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    // tiles < 1: std::invalid_argument from the core, a ValueError here.
    normalise_contrast(px, w, h, stride, ContrastConfig{clip_limit, tiles}, o);
  }
  return out;
}

py::array_t<float> model_input_py(const py::list& images, const py::array_t<float, py::array::c_style | py::array::forcecast>& scale,
                                  const py::array_t<float, py::array::c_style | py::array::forcecast>& shift, bool nchw) {
  if (images.empty()) throw py::value_error("model_input needs at least one image");
  std::vector<py::array> keep;
  std::vector<const uint8_t*> ptrs;
  py::ssize_t h = 0, w = 0, c = 0;
  for (const auto& item : images) {
    auto a = py::reinterpret_borrow<py::array>(item);
    if (!has_dtype<uint8_t>(a) || (a.ndim() != 2 && a.ndim() != 3))
      throw py::type_error("images must be uint8 arrays of shape (h, w) or (h, w, channels)");
    const py::ssize_t ah = a.shape(0), aw = a.shape(1), ac = a.ndim() == 3 ? a.shape(2) : 1;
    if (keep.empty()) {
      h = ah, w = aw, c = ac;
      if (h < 1 || w < 1 || c < 1) throw py::value_error("images must not be empty");
    } else if (ah != h || aw != w || ac != c) {
      throw py::value_error("images must all have one shape");
    }
    if (!(a.flags() & py::array::c_style)) a = py::array::ensure(a, py::array::c_style);
    ptrs.push_back(static_cast<const uint8_t*>(a.data()));
    keep.push_back(std::move(a));
  }
  if (scale.size() != c || shift.size() != c) throw py::value_error("scale and shift need one value per channel");
  const auto n = static_cast<py::ssize_t>(ptrs.size());
  std::vector<py::ssize_t> shape = nchw ? std::vector<py::ssize_t>{n, c, h, w} : std::vector<py::ssize_t>{n, h, w, c};
  py::array_t<float> out(shape);
  float* o = out.mutable_data();
  const float *s = scale.data(), *t = shift.data();
  {
    py::gil_scoped_release release;
    model_input(ptrs.data(), n, h, w, c, s, t, nchw, o);
  }
  return out;
}

py::array_t<uint8_t> mirror_descriptors_py(const py::array& desc) {
  auto [n, d] = check_matrix(desc, "descriptors");
  if (!has_dtype<uint8_t>(desc) || d != 32) throw py::type_error("descriptors must be uint8 rows of 32 bytes");
  py::array_t<uint8_t> out({static_cast<py::ssize_t>(n), py::ssize_t{32}});
  mirror_descriptors(static_cast<const uint8_t*>(desc.data()), n, out.mutable_data());
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "dupscope compiled core: similarity tiles, top-k and the streaming engine";
  m.def("build_info", &build_info);
  m.def("normalize", &normalize, py::arg("embeddings"),
        "L2-normalised float32 copy of float32/float16 embeddings (zero rows stay zero)");
  m.def("hamming_matches", &hamming_matches, py::arg("a"), py::arg("b"), py::arg("ratio"),
        py::arg("kernel") = "auto",
        "Mutual nearest-neighbour matches of two uint8 descriptor sets (rows of a multiple of 8 "
        "bytes) by Hamming distance, each passing Lowe's ratio test; returns (index_a, index_b). "
        "kernel: 'auto' (the last of build_info()['hamming_kernels']) or one of those");
  m.def("keypoints", &keypoints_py, py::arg("grey"), py::arg("features") = 1000, py::arg("levels") = 5,
        py::arg("scale") = 1.4f, py::arg("fast_threshold") = 10, py::arg("kernel") = "auto",
        "Oriented binary keypoints of a 2-D uint8 grey image (FAST-9 on a pyramid, Harris-ranked, "
        "mirror-closed 256-bit pattern): (points (K, 2) float32, descriptors (K, 32) uint8, "
        "response (K,) float32, level (K,) int32). kernel: 'auto', 'portable' or "
        "build_info()['keypoint_kernel'] (the same keypoints)");
  m.def("normalise_contrast", &normalise_contrast_py, py::arg("grey"), py::arg("clip_limit") = 3.0f,
        py::arg("tiles") = 8,
        "A 2-D uint8 grey image stretched (1st and 99th percentiles to 0 and 255) and then equalised "
        "locally (CLAHE: tiles x tiles histograms clipped at clip_limit x their mean bin, bilinear "
        "between tile centres; clip_limit <= 0: the stretch only), as a new uint8 array");
  m.def("model_input", &model_input_py, py::arg("images"), py::arg("scale"), py::arg("shift"), py::arg("nchw") = true,
        "A list of uint8 images of one shape (h, w) or (h, w, channels) as a model's float32 input: "
        "value * scale[c] - shift[c], rounded as numpy's float32 multiply then subtract, "
        "(n, channels, h, w) or with nchw=False (n, h, w, channels)");
  m.def("mirror_descriptors", &mirror_descriptors_py, py::arg("descriptors"),
        "Descriptors of the same keypoints in the mirror image (the pattern's bit pairs swapped)");
  m.def("linkage_merges", &linkage_merges_py, py::arg("n"), py::arg("a"), py::arg("b"), py::arg("s"),
        "Complete-linkage merges of n images from scored pairs (dupscope.export.merge_list): "
        "(u, v, level) arrays in the order made");
  m.def("replay_merges", &replay_merges_py, py::arg("n"), py::arg("u"), py::arg("v"), py::arg("level"),
        py::arg("threshold"), py::arg("skip_a"), py::arg("skip_b"),
        "Groups at a threshold from a merge list, never joining a skip pair: per image the lowest "
        "row of its group, -1 in no group");
  m.def("cuda_device_count", [] { return cuda::device_count(); },
        "number of usable CUDA devices (0 without CUDA or a driver)");
  m.def("cuda_available", [] {
    std::string why;
    const bool ok = cuda::available(&why);
    return py::make_tuple(ok, why);
  });
  m.def("cuda_benchmark", [](int64_t mm, int64_t nn, int64_t d, int iters) {
    cuda::KernelTiming t;
    {
      py::gil_scoped_release release;
      t = cuda::benchmark_kernel(mm, nn, d, iters);
    }
    py::dict r;
    r["ms_ours"] = t.ms_ours;
    r["ms_cublas"] = t.ms_cublas;
    r["tflops_ours"] = t.tflops_ours;
    r["tflops_cublas"] = t.tflops_cublas;
    r["max_abs_diff"] = t.max_abs_diff;
    r["device"] = cuda::device_name();
    return r;
  }, py::arg("m"), py::arg("n"), py::arg("d"), py::arg("iters") = 20);
  m.def("bf16_products", [](py::array_t<float, py::array::c_style | py::array::forcecast> a,
                            py::array_t<float, py::array::c_style | py::array::forcecast> b, const std::string& kernel) {
    auto [m, d] = check_matrix(a, "a");
    auto [n, d2] = check_matrix(b, "b");
    if (d != d2) throw py::value_error("a and b must have the same number of columns");
    const Bf16Kernel kern = parse_bf16_kernel(kernel, "kernel");
    if (!bf16_kernel_available(kern)) throw py::value_error("this CPU cannot run the " + kernel + " kernel");
    const int64_t dp = bf16_depth_for(d, kern), ldc = (n + 31) / 32 * 32;
    py::array_t<float> out({m, n});
    const float* pa = a.data();
    const float* pb = b.data();
    float* po = out.mutable_data();
    {
      py::gil_scoped_release release;
      std::vector<uint16_t> a16(static_cast<size_t>(m * dp)), b16(static_cast<size_t>(n * dp));
      std::vector<uint16_t> pack(static_cast<size_t>(bf16_pack_elems(n, dp)));
      std::vector<float> c(static_cast<size_t>(((m + 11) / 12 * 12) * ldc));
      to_bf16(pa, m, d, a16.data(), dp);
      to_bf16(pb, n, d, b16.data(), dp);
      gemm_bf16(a16.data(), m, b16.data(), n, dp, c.data(), ldc, pack.data(), kern);
      for (int64_t r = 0; r < m; ++r) std::copy(c.begin() + r * ldc, c.begin() + r * ldc + n, po + r * n);
    }
    return out;
  }, py::arg("a"), py::arg("b"), py::arg("kernel") = "bf16-emulated",
        "Products of the rows of a and b rounded to bf16, as the bf16 tiles compute them: (m, n) float32");
  m.def("int8_products", [](py::array_t<float, py::array::c_style | py::array::forcecast> a,
                            py::array_t<float, py::array::c_style | py::array::forcecast> b, const std::string& kernel) {
    auto [m, d] = check_matrix(a, "a");
    auto [n, d2] = check_matrix(b, "b");
    if (d != d2) throw py::value_error("a and b must have the same number of columns");
    const Int8Kernel kern = parse_int8_kernel(kernel, "kernel");
    if (!int8_kernel_available(kern)) throw py::value_error("this CPU cannot run the " + kernel + " kernel");
    const int64_t dq = int8_depth_for(d, kern), ldc = (n + 31) / 32 * 32;
    py::array_t<float> out({m, n});
    const float* pa = a.data();
    const float* pb = b.data();
    float* po = out.mutable_data();
    {
      py::gil_scoped_release release;
      const Int8Rows qa = quantize_int8(pa, m, d, dq), qb = quantize_int8(pb, n, d, dq);
      std::vector<uint8_t> pack(static_cast<size_t>(int8_pack_bytes(n, dq)));
      // Poisoned: every value the kernel should write is checked by the caller.
      std::vector<float> c(static_cast<size_t>(((m + 15) / 16 * 16) * ldc), std::numeric_limits<float>::quiet_NaN());
      gemm_int8(qa, 0, m, qb, 0, n, c.data(), ldc, pack.data(), kern);
      for (int64_t r = 0; r < m; ++r) std::copy(c.begin() + r * ldc, c.begin() + r * ldc + n, po + r * n);
    }
    return out;
  }, py::arg("a"), py::arg("b"), py::arg("kernel") = "int8-emulated",
        "Products of the rows of a and b quantised to int8 (one scale per row), as the int8 tiles compute them: "
        "(m, n) float32");
  m.def("int8_rows_bound", [](py::array_t<float, py::array::c_style | py::array::forcecast> x) {
    if (x.ndim() != 2) throw py::value_error("int8_rows_bound needs an (n, d) array");
    const int64_t d = x.shape(1);
    return int8_rows_bound(x.data(), quantize_int8(x.data(), x.shape(0), d, d));
  }, py::arg("x"), "Largest difference, in cosine units, between an int8 tile product of these rows and the float32 one");
  m.def("float32_products", [](py::array_t<float, py::array::c_style | py::array::forcecast> a,
                               py::array_t<float, py::array::c_style | py::array::forcecast> b, const std::string& simd,
                               bool one_row) {
    auto [m, d] = check_matrix(a, "a");
    auto [n, d2] = check_matrix(b, "b");
    if (d != d2) throw py::value_error("a and b must have the same number of columns");
    const KernelSet& ks = kernels_for(simd.empty() ? simd_default() : parse_simd(simd));
    py::array_t<float> out({m, n});
    const float* pa = a.data();
    const float* pb = b.data();
    float* po = out.mutable_data();
    {
      py::gil_scoped_release release;
      AlignedFloats a_pack(a_pack_floats(ks, m, d)), b_pack(b_pack_floats(ks, n));
      const int64_t c_count = c_floats(ks, std::max(m, n));
      AlignedFloats c(c_count);
      std::fill(c.p, c.p + c_count, std::numeric_limits<float>::quiet_NaN());  // nothing unwritten may pass
      TileWorkspace ws;
      ws.a_pack = a_pack.p;
      ws.b_pack = b_pack.p;
      ws.c = c.p;
      if (!one_row) ks.gemm(pa, m, pb, n, d, ws);
      for (int64_t r = 0; r < m; ++r) {
        if (one_row) ks.row_gemm(pa + r * d, pb, n, d, ws);
        const float* src = ws.c + (one_row ? 0 : r * ws.ldc);
        std::copy(src, src + n, po + r * n);
      }
    }
    return out;
  }, py::arg("a"), py::arg("b"), py::arg("simd") = "", py::arg("one_row") = false,
        "Float32 products of the rows of a and b by one SIMD level's tile kernel (default: the selected level), "
        "whole or one row of a at a time as the bf16 re-rank computes them: (m, n) float32");
  m.def("bf16_error_bound", &bf16_error_bound, py::arg("d"),
        "Largest difference, in cosine units, between a bf16 tile product of unit vectors and the float32 one");
  m.def("bf16_rows_bound", [](py::array_t<float, py::array::c_style | py::array::forcecast> x) {
    if (x.ndim() != 2) throw py::value_error("bf16_rows_bound needs an (n, d) array");
    return bf16_rows_bound(x.data(), x.shape(0), x.shape(1));
  }, py::arg("x"), "bf16_error_bound for the products between these rows (their own bf16 rounding residuals)");
  m.def("merge_topk", [](py::array_t<int32_t, py::array::c_style> index_a, py::array_t<float, py::array::c_style> sim_a,
                         py::array_t<int32_t, py::array::c_style> index_b, py::array_t<float, py::array::c_style> sim_b) {
    if (index_a.ndim() != 2 || sim_a.ndim() != 2 || index_b.ndim() != 2 || sim_b.ndim() != 2)
      throw py::value_error("merge_topk needs four (N, k) arrays");
    const int64_t n = index_a.shape(0), k = index_a.shape(1);
    for (const py::array* a : {static_cast<const py::array*>(&sim_a), static_cast<const py::array*>(&index_b),
                               static_cast<const py::array*>(&sim_b)})
      if (a->shape(0) != n || a->shape(1) != k)
        throw py::value_error("merge_topk: the four arrays must have one shape (N, k)");
    py::array_t<int32_t> idx({n, k});
    py::array_t<float> sim({n, k});
    {
      const int32_t* ia = index_a.data();
      const float* va = sim_a.data();
      const int32_t* ib = index_b.data();
      const float* vb = sim_b.data();
      int32_t* io = idx.mutable_data();
      float* vo = sim.mutable_data();
      py::gil_scoped_release release;
      merge_topk(n, static_cast<int>(k), ia, va, ib, vb, io, vo);
    }
    return py::make_tuple(idx, sim);
  }, py::arg("index_a"), py::arg("sim_a"), py::arg("index_b"), py::arg("sim_b"));
  py::class_<PyJob>(m, "Job")
      .def(py::init<py::array_t<float, py::array::c_style>, py::object, int64_t, int, int,
                    const std::string&, const std::string&, const std::string&, py::object,
                    int, std::array<int64_t, 4>, const std::string&, int, const std::string&>(),
           py::arg("normalized"), py::arg("valid"), py::arg("tile"), py::arg("k"),
           py::arg("threads"), py::arg("simd"), py::arg("device"), py::arg("output"),
           py::arg("dense_out"), py::arg("queue_chunks"), 
           py::arg("rect") = std::array<int64_t, 4>{0, 0, 0, 0}, py::arg("precision") = "fp32",
           py::arg("candidates") = 0, py::arg("selection") = "tile")
      .def_property_readonly("fallback_rows", [](const PyJob& j) { return j.job_->fallback_rows(); })
      .def_property_readonly("float32_tiles", [](const PyJob& j) { return j.job_->float32_tiles(); })
      .def("topk_values", &PyJob::topk_values)
      .def("start", &PyJob::start)
      .def("pop", &PyJob::pop, py::arg("timeout_ms") = 100)
      .def("wait", &PyJob::wait)
      .def("wait_for", [](PyJob& j, int timeout_ms) {
        py::gil_scoped_release release;
        return j.job_->wait_for(timeout_ms);
      }, py::arg("timeout_ms"), "True once every worker has finished (GIL released while waiting)")
      .def("cancel", [](PyJob& j) { j.job_->cancel(); })
      .def("topk", &PyJob::topk)
      .def_property_readonly("tiles_total", [](const PyJob& j) { return j.job_->tiles_total(); })
      .def_property_readonly("tiles_done", [](const PyJob& j) { return j.job_->tiles_done(); })
      .def_property_readonly("chunks_total", [](const PyJob& j) { return j.job_->chunks_total(); })
      .def_property_readonly("threads", [](const PyJob& j) { return j.job_->threads(); })
      .def_property_readonly("device", [](const PyJob& j) { return std::string(j.job_->device()); });
}
