"""Every default of the pipeline, in one place (the command line, the API and the engine read
them from here).

Thread counts are named by what they drive: *decode* threads read and resize images, *model*
threads are onnxruntime's intra-op threads on the CPU, *engine* threads compute similarity tiles.
"""

from __future__ import annotations

import os

#: Neighbours kept per image.
K = 32
#: Similarity tile edge (and HDF5 chunk edge) by device kind.
TILE = {"cpu": 256, "cuda": 1024}
#: Tile edge of the bf16 candidate pass (neighbour lists only, no HDF5 chunks): the AMX kernel
#: does less per-tile work at 512 (N = 100,000, D = 320 on a 2-core Sapphire Rapids VM, two runs
#: each: 13.1 and 15.8 s against 14.9 and 24.8 s at 256; benchmarks/RESULTS.md).
TILE_BF16 = 512
#: Images per model call.
BATCH_SIZE = 32
#: Model threads: None lets onnxruntime choose (one per core).
MODEL_THREADS = None


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def decode_threads() -> int:
    """Default decode threads: one per usable core."""
    return usable_cpus()


def engine_threads() -> int:
    """Default engine threads: one per usable core."""
    return usable_cpus()
