"""The similarity engine: embeddings in, similarity tiles and top-k neighbours out.

Similarity of images i and j is ``(1 + cos(e_i, e_j)) / 2``: 1 for identical embeddings, 0.5
for orthogonal ones, 0 for opposite ones; the diagonal is exactly 1. Embeddings are
L2-normalised by the engine (zero rows stay zero). All heavy work runs in ``dupscope._core``
with the GIL released.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from . import _core, defaults

Progress = Optional[Callable[[int, int], None]]

#: Tile (and HDF5 chunk) edge used when none is given, per device. Chosen by measurement with
#: benchmarks/bench_tile_size.py (see benchmarks/RESULTS.md).
DEFAULT_TILE = defaults.TILE
DEFAULT_K = defaults.K


def build_info() -> dict:
    """What this build of dupscope contains and what it picked on this machine.

    Returns
    -------
    dict
        Compiler, SIMD levels compiled / supported / selected (``DUPSCOPE_SIMD`` forces one),
        threading, and CUDA (compiled, available, device name or the reason it is unavailable).
    """
    return dict(_core.build_info())


def resolve_device(device) -> str:
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` (or a :class:`dupscope.device.Device`)
    into the device that will run: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    dupscope.errors.DeviceError
        For an unknown device name, or when a GPU is asked for but cannot be used (the message
        says first that no usable GPU was found, then why).
    """
    from .device import parse_device, require_gpu

    dev = parse_device(device)
    if dev.kind == "cpu":
        return "cpu"
    if dev.kind == "cuda":
        require_gpu(dev)
        return dev.engine
    ok, _ = _core.cuda_available()
    return "cuda" if ok else "cpu"


def default_threads() -> int:
    """The number of CPU threads the engine uses by default (:func:`dupscope.defaults.engine_threads`)."""
    return defaults.engine_threads()


def normalize(embeddings: np.ndarray) -> np.ndarray:
    """Check the embeddings and return an L2-normalised float32 copy.

    Parameters
    ----------
    embeddings : numpy.ndarray
        (N, D) float32 or float16, C-contiguous, finite.

    Raises
    ------
    TypeError, ValueError
        With what to do: wrong type, dtype, shape, layout, NaN/inf (naming the row), N == 0.
    """
    if not isinstance(embeddings, np.ndarray):
        raise TypeError(
            f"embeddings must be a numpy array, got {type(embeddings).__name__}: "
            "use numpy.asarray(x, dtype=numpy.float32)"
        )
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be 2-D (N x D), got shape {embeddings.shape}: "
            "reshape to (n_images, dim)"
        )
    if embeddings.dtype not in (np.float32, np.float16):
        raise TypeError(
            f"embeddings must be float32 or float16, got {embeddings.dtype}: "
            "use x.astype(numpy.float32)"
        )
    n, d = embeddings.shape
    if n == 0:
        raise ValueError("no embeddings to compare (N == 0)")
    if d == 0:
        raise ValueError("embeddings have zero dimensions (D == 0)")
    if not embeddings.flags.c_contiguous:
        raise ValueError(
            "embeddings must be C-contiguous (rows stored one after another): "
            "pass numpy.ascontiguousarray(x)"
        )
    return _core.normalize(embeddings)


def _valid_mask(valid: Optional[np.ndarray], n: int) -> Optional[np.ndarray]:
    if valid is None:
        return None
    v = np.asarray(valid)
    if v.shape != (n,):
        raise ValueError(f"valid must have shape ({n},), one flag per embedding, got {v.shape}")
    return np.ascontiguousarray(v.astype(np.uint8))


def effective_tile(n: int, tile: Optional[int], device: str, precision: str = "fp32") -> int:
    """The tile a job over ``n`` rows uses: ``tile`` (or the default for the device, or for bf16
    and int8 tiles :data:`dupscope.defaults.TILE_BF16`), capped at N rounded up to 16 (a larger tile would
    only pad)."""
    if tile is None and precision.startswith(("bf16", "int8")):
        tile = defaults.TILE_BF16
    return min(_check_tile(tile, device), -(-int(n) // 16) * 16)


def _check_tile(tile: Optional[int], device: str) -> int:
    t = DEFAULT_TILE[device.split(":")[0]] if tile is None else int(tile)
    if t < 16:
        raise ValueError(f"tile must be at least 16, got {t}")
    return t


class SimilarityJob:
    """One run of the compiled engine over a set of embeddings.

    Most users want :func:`similarity_matrix`, :func:`topk` or :func:`write_similarity`; this
    class is the streaming interface underneath them: start it, iterate over finished chunks
    (``output="chunks"``), then read the top-k lists.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        *,
        k: int = DEFAULT_K,
        tile: Optional[int] = None,
        device: str = "auto",
        valid: Optional[np.ndarray] = None,
        threads: Optional[int] = None,
        output: str = "none",
        dense_out: Optional[np.ndarray] = None,
        queue_chunks: int = 0,
        rect: Optional[Tuple[int, int, int, int]] = None,
        precision: str = "fp32",
        candidates: Optional[int] = None,
        selection: str = "tile",
    ) -> None:
        """``selection="candidates"`` (top-k only, float32): each tile's values are filtered
        against thresholds read before the tile and offered as a list, the selection the CUDA
        path runs on the device so that only candidates cross PCIe; on the CPU it gives the same
        lists as ``"tile"`` and exists to check that logic without a GPU."""
        normalized = normalize(embeddings)
        self.n, self.d = normalized.shape
        if int(k) < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.k = int(k)
        self.device = resolve_device(device)
        self.tile = effective_tile(self.n, tile, self.device, precision)
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._job = _core.Job(
            normalized,
            _valid_mask(valid, self.n),
            self.tile,
            self.k,
            self.threads,
            "",  # SIMD level: the best supported, or DUPSCOPE_SIMD
            self.device,
            output,
            dense_out,
            queue_chunks,
            tuple(int(v) for v in rect) if rect is not None else (0, 0, 0, 0),
            precision,
            int(candidates if candidates is not None else default_candidates(self.k)),
            selection,
        )

    @property
    def tiles_total(self) -> int:
        return self._job.tiles_total

    @property
    def tiles_done(self) -> int:
        return self._job.tiles_done

    def start(self) -> "SimilarityJob":
        self._job.start()
        return self

    def chunks(self, progress: Progress = None) -> Iterator[Tuple[int, int, np.ndarray]]:
        """Yield ``(row_block, col_block, chunk)`` for every (tile x tile) float16 chunk."""
        try:
            while True:
                item = self._job.pop(100)
                if item is False:
                    break
                if progress is not None:
                    progress(self._job.tiles_done, self._job.tiles_total)
                if item is None:
                    continue
                bi, bj, chunk = item
                yield int(bi), int(bj), chunk.view(np.float16)
        except BaseException:
            self._job.cancel()
            raise

    def wait(self, progress: Progress = None) -> None:
        """Block until every tile is done, reporting progress every 100 ms.

        Waits in slices (GIL released) so that Ctrl-C stops the job between them.
        """
        try:
            while not self._job.wait_for(100):
                if progress is not None:
                    progress(self._job.tiles_done, self._job.tiles_total)
            self._job.wait()
        except BaseException:
            self._job.cancel()
            raise
        if progress is not None:
            progress(self._job.tiles_total, self._job.tiles_total)

    def topk(self) -> Tuple[np.ndarray, np.ndarray]:
        """The k nearest neighbours of each row after :meth:`wait`: (index int32, sim float16)."""
        self._job.wait()
        idx, sim = self._job.topk()
        return idx, sim.view(np.float16)

    @property
    def fallback_rows(self) -> int:
        """bf16 precision: rows whose candidates could not prove their list and were searched
        again in float32."""
        return self._job.fallback_rows

    @property
    def float32_tiles(self) -> int:
        """int8 precision: tiles that let so many values through the int8 filter that the float32
        kernel computed them whole (mostly while the lists fill)."""
        return self._job.float32_tiles

    def topk_values(self) -> Tuple[np.ndarray, np.ndarray]:
        """As :meth:`topk`, with the float32 similarities (what :func:`merge_topk` merges)."""
        self._job.wait()
        return self._job.topk_values()


def similarity_matrix(
    embeddings: np.ndarray,
    device: str = "auto",
    *,
    tile: Optional[int] = None,
    valid: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """The full N x N similarity matrix in memory, float16 (for N that fits in memory).

    Parameters
    ----------
    embeddings : numpy.ndarray
        (N, D) float32 or float16.
    device : {"auto", "cpu", "cuda"}
    tile : int, optional
        Tile edge; the default suits the device.
    valid : numpy.ndarray of bool, optional
        Rows marked False (e.g. images that failed to load) get NaN rows and columns.
    threads : int, optional
        CPU worker threads (default: all cores this process may use).
    out : numpy.ndarray, optional
        A C-contiguous (N, N) float16 array to write into instead of a new one.

    Returns
    -------
    numpy.ndarray
        (N, N) float16, symmetric, values in [0, 1], diagonal exactly 1.
    """
    n = embeddings.shape[0] if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2 else 0
    if out is None:
        out = np.empty((n, n), dtype=np.float16)
    elif out.shape != (n, n) or out.dtype != np.float16 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float16 array of shape ({n}, {n})")
    job = SimilarityJob(embeddings, k=0, tile=tile, device=device, valid=valid,
                        threads=threads, output="dense", dense_out=out.view(np.uint16))
    job.start().wait()
    return out


def default_candidates(k: int) -> int:
    """Candidates per row the bf16 pass may keep for a list of ``k``: its k best and up to
    ``3 k + 16`` near misses (see :func:`topk`)."""
    return 4 * int(k) + 16


#: Widest embedding for which ``precision="auto"`` picks bf16 tiles. Measured on a 2-core AMD
#: EPYC with AVX512_BF16 (benchmarks/RESULTS.md): 1.41-1.48x float32 at D = 256 and 320 (N =
#: 100,000), no gain from D = 512 on at N = 20,000, and on clustered, centred 1952-d rows 6.6x
#: slower, with many rows searched again. The bf16 tiles stay about twice as fast when the rows
#: are wide; the re-rank is what grows: the bf16 error bound does not shrink with D while the
#: spread of the similarities does, so more near misses fall in the margin, and each costs a
#: D-wide float32 row.
BF16_MAX_DIM = 384


def resolve_precision(precision: str, device: str, dim: Optional[int] = None) -> str:
    """``"auto"``: ``"bf16"`` for embeddings of at most :data:`BF16_MAX_DIM` columns (``dim``;
    None: no limit checked) on a CPU whose selected SIMD level is avx512 and whose bf16 kernel
    was measured faster than float32 there: AMX-BF16 (1.6-1.7x on a Sapphire Rapids VM), or
    AVX512_BF16 on AMD (1.41x on an EPYC; on the Sapphire Rapids VM that kernel ran at 0.62x
    float32, so Intel CPUs without usable AMX stay in float32). Else ``"fp32"``; other values are
    returned as they are (checked by the engine)."""
    if precision != "auto":
        return precision
    info = _core.build_info()
    kernels = info.get("lowp_kernels", [])
    fast = "bf16-amx" in kernels or ("bf16-avx512" in kernels and info.get("cpu_vendor") == "amd")
    use = device == "cpu" and fast and info.get("simd_selected") == "avx512"
    if dim is not None and dim > BF16_MAX_DIM:
        use = False
    return "bf16" if use else "fp32"


def topk(
    embeddings: np.ndarray,
    k: int = DEFAULT_K,
    device: str = "auto",
    *,
    tile: Optional[int] = None,
    valid: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    progress: Progress = None,
    precision: str = "fp32",
    candidates: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """The k most similar other rows of every row, without building the N x N matrix.

    ``precision="bf16"`` (CPUs with AVX512_BF16; ``"auto"`` picks it where it runs natively and
    the rows have at most :data:`BF16_MAX_DIM` columns) computes the tiles from bf16 rows, with
    the fastest kernel the CPU runs: AMX-BF16 tile products where the CPU has them and the OS
    grants the tile state (``"bf16-amx"``; Intel Sapphire Rapids and later), else AVX512_BF16 at
    twice the float32 multiply rate (``"bf16-avx512"``); ``"bf16-emulated"`` runs anywhere,
    slowly, for tests. ``build_info()["lowp_kernels"]`` lists the ones available. Each row keeps its k best bf16 products and its near misses (those
    within twice the bf16 error bound of its k-th best of the moment; at most ``candidates - k``
    of them, default ``candidates = 4 k + 16``), and these are re-ranked with the float32
    kernel's own products. Every column left out is then worth less in float32 than the k kept,
    so the lists equal ``precision="fp32"``'s exactly, indices and values; a row whose near
    misses did not fit is searched again in float32 (``SimilarityJob.fallback_rows``).

    ``precision="int8"`` (CPUs with AVX512_VNNI; ``"int8-amx"`` with AMX-INT8, ``"int8-vnni"``,
    ``"int8-emulated"``) computes the tiles from int8 rows (one scale per row, exact integer
    sums). Each value within the int8 error bound of a row's (or column's) current k-th best is
    computed again at once by the float32 kernel, and a tile that lets through more than 1 / 256
    of its values is computed whole in float32 (``SimilarityJob.float32_tiles``); only float32
    values enter the lists, so they equal ``precision="fp32"``'s exactly. Its bound is about six
    times bf16's, so that many values go through float32 again that it was measured slower than
    float32 on random rows (benchmarks/RESULTS.md); ``"auto"`` never picks it.

    Returns
    -------
    index : numpy.ndarray
        (N, k) int32, most similar first; ties go to the lower index; -1 where a row has fewer
        than k valid neighbours (N - 1 < k, or rows marked invalid).
    similarity : numpy.ndarray
        (N, k) float16, NaN where the index is -1.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    dev = resolve_device(device)
    dim = np.shape(embeddings)[1] if np.ndim(embeddings) == 2 else None
    job = SimilarityJob(embeddings, k=k, tile=tile, device=dev, valid=valid,
                        threads=threads, output="none", precision=resolve_precision(precision, dev, dim),
                        candidates=candidates)
    job.start().wait(progress)
    return job.topk()


def pair_topk(
    first: np.ndarray,
    second: np.ndarray,
    k: int,
    *,
    tile: Optional[int] = None,
    valid: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    threads: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Top-k lists over the pairs between two disjoint sets of rows only (each pair once, on the
    CPU): the task of one pair of row blocks in a distributed top-k. ``first`` must have a
    multiple of the tile as its number of rows (then the tiles are the engine's own on the
    whole set). ``valid``: a mask for each set.

    Returns
    -------
    index, similarity : numpy.ndarray
        (len(first) + len(second), k) int32 and float32: rows of ``first`` then of ``second``,
        indices into that same concatenation (-1 / NaN padding), for :func:`merge_topk`.
    """
    n1, n2 = len(first), len(second)
    x = np.concatenate([np.asarray(first), np.asarray(second)])
    t = effective_tile(len(x), tile, "cpu")
    if n1 % t or not n1 or not n2:
        raise ValueError(f"the first set's {n1} rows must be a (non-zero) multiple of the tile, {t}, and the second "
                         "set not empty")
    v = None if valid is None else np.concatenate([np.asarray(valid[0], bool), np.asarray(valid[1], bool)])
    job = SimilarityJob(x, k=k, tile=t, device="cpu", valid=v, threads=threads, output="none",
                        rect=(0, n1 // t, n1 // t, -(-len(x) // t)))
    job.start().wait()
    return job.topk_values()


def merge_topk(a: Tuple[np.ndarray, np.ndarray], b: Tuple[np.ndarray, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """The k best of two sets of best-first lists over disjoint columns (``(index int32, sim
    float32)`` each, (N, k)), in the engine's order: higher similarity first, then the lower
    index (compiled, one pass per row)."""
    return _core.merge_topk(np.ascontiguousarray(a[0], np.int32), np.ascontiguousarray(a[1], np.float32),
                            np.ascontiguousarray(b[0], np.int32), np.ascontiguousarray(b[1], np.float32))
