#!/usr/bin/env bash
# Fetch the real photos of the phase-1 benchmark into bench-data/ (gitignored) and build its set.
#
# Debian packages are downloaded and unpacked, never installed (dpkg-deb -x needs no root); the
# cache layout is the one benchmarks/accuracy_setup.sh uses, so the two share their downloads.
# Then bench_phase1.py --prepare writes the JPEG re-encodings and the COCO file (see its docstring).
# Run from anywhere:  bash benchmarks/phase1_setup.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${DUPSCOPE_BENCH_DATA:-$root/bench-data}"
mkdir -p "$cache/debs" "$cache/unpacked"

fetch() {
    local pkg="$1"
    if ! ls "$cache/debs/${pkg}"_*.deb >/dev/null 2>&1; then
        (cd "$cache/debs" && apt-get download "$pkg") || {
            echo "could not download $pkg (try: apt-get update)" >&2
            return 1
        }
    fi
    local marker="$cache/unpacked/.${pkg}.done"
    if [ ! -e "$marker" ]; then
        dpkg-deb -x "$cache/debs/${pkg}"_*.deb "$cache/unpacked"
        touch "$marker"
    fi
}

fetch stellarium-data
for pkg in plasma-workspace-wallpapers mate-backgrounds; do
    fetch "$pkg" || echo "skipping $pkg" >&2
done

python "$root/benchmarks/bench_phase1.py" --prepare --data "$cache"
