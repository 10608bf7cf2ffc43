"""Hashes of images by imagededup's hashing methods, for bench_accuracy.py.

imagededup depends on torch and torchvision (a multi-GB CUDA build from PyPI), so it lives in
its own virtual environment made by ``benchmarks/accuracy_setup.sh`` (``bench-data/idd-venv``),
and this script runs there::

    bench-data/idd-venv/bin/python benchmarks/imagededup_hashes.py IMAGES.txt OUT.json

IMAGES.txt lists one image per line (relative to its folder). OUT.json maps each method name
(``PHash``, ``DHash``, ``WHash``, ``AHash``) to the list of 64-bit hashes as 16-digit hex
strings, one per image in the same order, plus ``seconds`` per method and the version.
Only imagededup's public ``encode_image`` is called; the comparison (Hamming distance) is done
by bench_accuracy.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    import imagededup
    from imagededup.methods import AHash, DHash, PHash, WHash

    listing = Path(sys.argv[1])
    paths = [listing.parent / line.strip() for line in listing.read_text().splitlines() if line.strip()]
    out = {"version": getattr(imagededup, "__version__", "?"), "n": len(paths), "seconds": {}}
    for cls in (PHash, DHash, WHash, AHash):
        method = cls(verbose=False)
        t = time.perf_counter()
        hashes = [method.encode_image(image_file=str(p)) for p in paths]
        out["seconds"][cls.__name__] = time.perf_counter() - t
        if any(h is None for h in hashes):
            bad = [str(p) for p, h in zip(paths, hashes) if h is None][:3]
            raise SystemExit(f"{cls.__name__} could not hash {bad}")
        out[cls.__name__] = hashes
        print(f"{cls.__name__}: {len(hashes)} images in {out['seconds'][cls.__name__]:.1f} s", flush=True)
    Path(sys.argv[2]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
