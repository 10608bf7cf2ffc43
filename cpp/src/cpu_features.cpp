#include "dupscope/cpu_features.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include "dupscope/kernels.hpp"

namespace dupscope {

const char* simd_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Portable: return "portable";
    case SimdLevel::AVX2: return "avx2";
    case SimdLevel::AVX512: return "avx512";
  }
  return "unknown";
}

SimdLevel parse_simd(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (s == "portable" || s == "generic" || s == "scalar") return SimdLevel::Portable;
  if (s == "avx2") return SimdLevel::AVX2;
  if (s == "avx512" || s == "avx-512") return SimdLevel::AVX512;
  throw std::invalid_argument("unknown SIMD level '" + name +
                              "': use one of portable, avx2, avx512");
}

std::vector<SimdLevel> simd_compiled() {
#if defined(DUPSCOPE_X86)
  return {SimdLevel::Portable, SimdLevel::AVX2, SimdLevel::AVX512};
#else
  return {SimdLevel::Portable};
#endif
}

static bool cpu_can_run(SimdLevel level) {
#if defined(DUPSCOPE_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  switch (level) {
    case SimdLevel::Portable: return true;
    case SimdLevel::AVX2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case SimdLevel::AVX512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }
  return false;
#else
  return level == SimdLevel::Portable;
#endif
}

std::vector<std::string> cpu_int8_dot() {
  std::vector<std::string> out;
#if defined(DUPSCOPE_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vnni")) out.emplace_back("avx512_vnni");
#if defined(__clang__) || __GNUC__ >= 11
  if (__builtin_cpu_supports("avxvnni")) out.emplace_back("avx_vnni");
#endif
#endif
  return out;
}

std::string cpu_vendor() {
#if defined(DUPSCOPE_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_is("intel")) return "intel";
  if (__builtin_cpu_is("amd")) return "amd";
#endif
  return "";
}

std::vector<SimdLevel> simd_supported() {
  std::vector<SimdLevel> out;
  for (SimdLevel l : simd_compiled())
    if (cpu_can_run(l)) out.push_back(l);
  return out;
}

SimdLevel simd_default() {
  const std::vector<SimdLevel> ok = simd_supported();
  if (const char* env = std::getenv("DUPSCOPE_SIMD"); env != nullptr && *env != '\0') {
    const SimdLevel want = parse_simd(env);
    if (std::find(ok.begin(), ok.end(), want) == ok.end())
      throw std::runtime_error(std::string("DUPSCOPE_SIMD=") + env +
                               " is not supported by this CPU or build");
    return want;
  }
  return ok.back();
}

const KernelSet& kernels_for(SimdLevel level) {
  const std::vector<SimdLevel> ok = simd_supported();
  if (std::find(ok.begin(), ok.end(), level) == ok.end())
    throw std::runtime_error(std::string("SIMD level ") + simd_name(level) +
                             " is not supported by this CPU or build");
  switch (level) {
#if defined(DUPSCOPE_X86)
    case SimdLevel::AVX2: return kernels_avx2();
    case SimdLevel::AVX512: return kernels_avx512();
#endif
    default: return kernels_portable();
  }
}

}  // namespace dupscope
