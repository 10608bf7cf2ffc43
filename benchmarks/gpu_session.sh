#!/usr/bin/env bash
# One prepared call for a session that is lent a GPU machine (issue 16): build dupscope there with
# its own nvcc, run the `gpu` tests and benchmarks/bench_gpu.py, and leave every log in $OUT.
#
# The machine reaches no package registry; its image already holds numpy, h5py, onnxruntime (CPU),
# Pillow, OpenCV, rich, pybind11, scikit-build-core, CMake, ninja, pytest and torch, so the build
# is `pip install --no-build-isolation --no-deps .`. From the device tool, in the repository root:
#
#     bash benchmarks/gpu_session.sh            (timeout_s about 540; needs no carried paths)
#
# Budget: build about 2 minutes, tests under 1, benchmark 2-4. Each step has its own timeout so
# that a hang still leaves the earlier logs.
set -uo pipefail
OUT="${OUT:-/tmp/dupscope-gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvcc --version >> "$OUT/nvidia-smi.txt" 2>&1
echo "== build"
if ! timeout 240 python3 -m pip install --no-build-isolation --no-deps -v . > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  exit 1
fi
python3 -c "import dupscope, json; print(json.dumps(dupscope.build_info(), indent=1))" 2>&1 | tee "$OUT/build_info.txt"
echo "== gpu tests"
timeout 180 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_engine.py tests/test_device.py 2>&1 | tee "$OUT/gpu_tests.log"
echo "== bench_gpu"
timeout 300 python3 benchmarks/bench_gpu.py --n 50000 --d 320 --k 32 2>&1 | tee "$OUT/bench_gpu.log"
