#!/usr/bin/env bash
# Fetch the real photos the accuracy benchmark is built from into bench-data/ (gitignored).
#
# Debian packages are downloaded and unpacked, never installed (no root needed for dpkg-deb -x).
# Run from the repository root:  bash benchmarks/accuracy_setup.sh
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

# ~555 astronomy photos: many look alike, which makes them hard negatives.
fetch stellarium-data
# A few dozen large landscape photos; optional (the benchmark works without them).
for pkg in mate-backgrounds plasma-workspace-wallpapers; do
    fetch "$pkg" || echo "skipping $pkg" >&2
done

echo "photos under $cache/unpacked:"
find "$cache/unpacked" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' \) | wc -l

# imagededup (a peer) for its hashing methods. It requires torch and torchvision, a multi-GB
# CUDA build from PyPI, so it gets its own virtual environment rather than dupscope's; set
# DUPSCOPE_BENCH_NO_IMAGEDEDUP=1 to skip it (bench_accuracy.py then leaves it out).
if [ -z "${DUPSCOPE_BENCH_NO_IMAGEDEDUP:-}" ] && [ ! -x "$cache/idd-venv/bin/python" -o ! -e "$cache/idd-venv/.done" ]; then
    python3 -m venv "$cache/idd-venv"
    if "$cache/idd-venv/bin/pip" install -q "imagededup==0.3.3.post2"; then
        touch "$cache/idd-venv/.done"
    else
        echo "could not install imagededup; bench_accuracy.py will leave it out" >&2
    fi
fi
