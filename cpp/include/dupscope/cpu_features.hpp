// Instruction-set levels of the CPU kernels and their run-time selection.
#pragma once
#include <string>
#include <vector>

namespace dupscope {

enum class SimdLevel : int { Portable = 0, AVX2 = 1, AVX512 = 2 };

const char* simd_name(SimdLevel level);
// Parses "portable", "avx2", "avx512" (case-insensitive); throws std::invalid_argument otherwise.
SimdLevel parse_simd(const std::string& name);
// Levels this build contains.
std::vector<SimdLevel> simd_compiled();
// Levels this build contains and this CPU (and OS) can run.
std::vector<SimdLevel> simd_supported();
// The best supported level, or the one forced by the DUPSCOPE_SIMD environment variable
// (throws std::runtime_error if that level is unknown or unsupported here).
SimdLevel simd_default();

// The CPU's int8 dot-product instructions ("avx512_vnni", "avx_vnni"; empty when none): where
// onnxruntime's quantised convolutions run at four times the float multiply rate, so the int8
// network is the default there (dupscope.models.default_model).
std::vector<std::string> cpu_int8_dot();

// "intel", "amd", or "" (another vendor, or a build that cannot ask): which bf16 kernel is
// worth using depends on it (dupscope.engine.resolve_precision).
std::string cpu_vendor();

}  // namespace dupscope
