"""The AVX-512 and AMX kernels' logic, checked on any x86-64 CPU through scalar stand-in intrinsics.

The real AVX-512 and AMX paths are tested by test_engine.py only where the CPU has them. These
tests compile the kernels against stand-in headers instead: cpp/src/kernel_avx512.cpp against
tests/cpp/emulated_avx512/immintrin.h (packing, the micro-kernel and its one-row form, masked
tails, the float16 epilogue, the mirrored half and the top-k filter's compressed hits), and
cpp/src/lowp_amx.cpp against tests/cpp/emulated_amx/immintrin.h (the tile configuration, the
bf16 pack as tiles, the 32 x 32 and 16 x 32 blocks, the rows left to the AVX512_BF16 kernel;
the same for the int8 tiles, with cpp/src/lowp_avx512vnni.cpp against the AVX-512 stand-ins),
each checked against a double-precision sum.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernel")
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_avx512_kernel_logic_with_emulated_intrinsics(tmp_path):
    inc = ["-I", str(ROOT / "cpp" / "include"), "-I", str(ROOT / "cpp" / "src")]
    obj = tmp_path / "k512.o"
    exe = tmp_path / "check"
    subprocess.run(["g++", "-std=c++17", "-O1", "-DDUPSCOPE_X86", "-I",
                    str(ROOT / "tests" / "cpp" / "emulated_avx512"), *inc, "-c",
                    str(ROOT / "cpp" / "src" / "kernel_avx512.cpp"), "-o", str(obj)], check=True)
    subprocess.run(["g++", "-std=c++17", "-O1", "-DDUPSCOPE_X86", *inc,
                    str(ROOT / "tests" / "cpp" / "check_avx512_emulated.cpp"), str(obj), "-o",
                    str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "216 cases" in r.stdout


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernel")
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_amx_kernel_logic_with_emulated_tiles(tmp_path):
    inc = ["-I", str(ROOT / "cpp" / "include"), "-I", str(ROOT / "cpp" / "src")]
    flags = ["g++", "-std=c++17", "-O1", "-DDUPSCOPE_X86", "-DDUPSCOPE_AMX"]
    amx, vnni, exe = tmp_path / "amx.o", tmp_path / "vnni.o", tmp_path / "check"
    lowp, lowp8 = tmp_path / "lowp.o", tmp_path / "lowp_int8.o"
    subprocess.run([*flags, "-I", str(ROOT / "tests" / "cpp" / "emulated_amx"), *inc, "-c",
                    str(ROOT / "cpp" / "src" / "lowp_amx.cpp"), "-o", str(amx)], check=True)
    subprocess.run([*flags, "-I", str(ROOT / "tests" / "cpp" / "emulated_avx512"), *inc, "-c",
                    str(ROOT / "cpp" / "src" / "lowp_avx512vnni.cpp"), "-o", str(vnni)], check=True)
    subprocess.run([*flags, *inc, "-c", str(ROOT / "cpp" / "src" / "lowp.cpp"), "-o", str(lowp)], check=True)
    subprocess.run([*flags, *inc, "-c", str(ROOT / "cpp" / "src" / "lowp_int8.cpp"), "-o", str(lowp8)],
                   check=True)
    subprocess.run([*flags, *inc, str(ROOT / "tests" / "cpp" / "check_amx_emulated.cpp"), str(amx), str(vnni),
                    str(lowp), str(lowp8), "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "504 cases" in r.stdout
    assert "int8: 756 cases, every product the emulation's bits" in r.stdout
