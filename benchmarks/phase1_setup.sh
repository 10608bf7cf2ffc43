#!/usr/bin/env bash
# Fetch the real photos of the phase-1 benchmark into bench-data/ (gitignored) and build its set.
#
# The photos are the ones the accuracy benchmark uses (same packages, same cache), so this runs
# accuracy_setup.sh for the download and then writes the JPEG re-encodings and the COCO file.
# Run from anywhere:  bash benchmarks/phase1_setup.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${DUPSCOPE_BENCH_DATA:-$root/bench-data}"
bash "$root/benchmarks/accuracy_setup.sh"
python "$root/benchmarks/bench_phase1.py" --prepare --data "$cache"
