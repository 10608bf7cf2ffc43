"""The AVX-512 kernel's logic, checked on any x86-64 CPU through scalar stand-in intrinsics.

The real AVX-512 path is tested by test_engine.py only where the CPU has AVX-512; this test
compiles cpp/src/kernel_avx512.cpp against tests/cpp/emulated_avx512/immintrin.h instead and
checks packing, the micro-kernel, masked tails, the float16 epilogue and the mirrored half.
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
