"""Shared helpers for the benchmark scripts: machine description, clean BLAS env, timing."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, List

# Some machines set these for old OpenBLAS builds; they slow a current numpy. Benchmarks
# measure numpy at its normal speed, so the scripts re-run themselves without them.
_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def reexec_without_blas_overrides() -> None:
    if any(v in os.environ for v in _BLAS_ENV):
        env = {k: v for k, v in os.environ.items() if k not in _BLAS_ENV}
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine() -> str:
    import numpy as np

    import dupscope

    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"Python {platform.python_version()}, numpy {np.__version__}",
    ]
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            lines.append(f"BLAS: {lib.get('internal_api')} {lib.get('version')} "
                         f"({lib.get('architecture')}, {lib.get('num_threads')} threads)")
    except ImportError:
        lines.append("BLAS: (install threadpoolctl to see which)")
    info = dupscope.build_info()
    lines.append(f"dupscope {info['version']}: SIMD {info['simd_selected']} "
                 f"(supported {','.join(info['simd_supported'])}), CUDA "
                 f"{'available: ' + info['cuda_device'] if info['cuda_available'] else 'not available'}")
    return "\n".join(lines)


def median_time(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; it prints one dict literal as its last line.

    A fresh process per measurement keeps peak RSS (ru_maxrss) honest.
    """
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{out.stderr}")
    import ast

    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def table(rows: List[List[str]], header: List[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), sep] + [fmt(r) for r in rows])
