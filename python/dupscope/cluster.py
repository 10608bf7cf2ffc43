"""The Ray backend: phase 1's heavy steps as tasks on a Ray cluster (``--backend ray``).

``dupscope similarity ... --backend ray [--address ADDR]`` runs the same phase 1 as the default
in-process backend and writes the same file; only where the work runs differs:

- **Embedding**: the images are cut into shards of :attr:`RayOptions.shard_rows` rows; actors
  that each hold one ONNX session (:attr:`RayOptions.actor_cpus` CPUs each, or one GPU each when
  the cluster has GPUs and the device allows them) decode and embed one shard per task. Finished
  shards go into the run's checkpoint, so a run stopped as a whole resumes with the shards not
  yet done (:mod:`dupscope.checkpoint`).
- **Fusion**: the driver fits ``dupscope-v3``'s data-set fit on the gathered raw output, with the
  in-process code (the fit is a few eigen-decompositions of D x D moments), and applies it.
- **Top-k**: the upper triangle of tiles is cut into :attr:`RayOptions.bands` ranges of equal
  work (:func:`dupscope.engine.tile_ranges`); each task computes its tiles once, offers each to
  the rows of both its blocks and returns float32 lists; the driver merges them per row
  (:func:`dupscope.engine.merge_topk`). The merged lists equal the in-process engine's
  (same kernel, same tiles, same order of ties).
- **Verification**: the candidate pairs, in order of their lower row, are cut into tasks of
  :attr:`RayOptions.pair_rows` pairs, each checked by :func:`dupscope.verify.verify_pairs`.
  The check's random draws are seeded by the pair, so the evidence does not depend on the cut.

A task whose worker dies is retried (:attr:`RayOptions.retries` times; embedding actors are
restarted), and the result is the same. Memory per task: a band task holds the normalised
embeddings (N x D float32, read from the object store, plus the engine's own copy) and N x k
(float32, int32) lists; an embedding task one shard's pixels and outputs; a verification task
its pairs' features (bounded by :attr:`dupscope.verify.VerifyConfig.cache_bytes`).

The environment variable ``DUPSCOPE_RAY_FAIL_ONCE`` names a file for fault-injection tests: the
first embedding or band task that finds it deletes it and kills its own worker process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .errors import RayUnavailable

__all__ = ["RayOptions", "RayUnavailable", "ray_session", "embed_images", "topk", "verify_pairs"]


@dataclass(frozen=True)
class RayOptions:
    """How phase 1 is cut into Ray tasks (see the module docstring).

    Attributes
    ----------
    address : str or None
        Cluster to join (``ray.init(address=...)``: ``"auto"``, ``"ray://host:10001"``,
        ``"host:6379"``); None starts a local one on this machine, unless ``RAY_ADDRESS`` is set.
    actor_cpus : int or None
        CPUs per embedding actor (its decode threads and onnxruntime threads); default: the
        cluster's CPUs up to 4.
    shard_rows : int
        Images per embedding task (and per checkpoint block).
    bands : int or None
        Top-k tasks; default: 4 per CPU of the cluster (tasks of equal work, so that a slow
        or lost worker delays little).
    band_cpus : int
        CPUs (engine threads) per top-k task.
    pair_rows : int
        Candidate pairs per verification task.
    retries : int
        Times a task is retried when its worker dies.
    """

    address: str | None = None
    actor_cpus: int | None = None
    shard_rows: int = 1024
    bands: int | None = None
    band_cpus: int = 1
    pair_rows: int = 2048
    retries: int = 3


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable('--backend ray needs Ray: pip install "dupscope[ray]" (or use the default in-process '
                             'backend)') from None
    return ray


class ray_session:
    """Context manager: joins (or starts) the Ray cluster of ``options.address`` and shuts down
    only a cluster it started itself; ``cpus`` and ``gpus`` are the cluster's."""

    def __init__(self, options: RayOptions = RayOptions()) -> None:
        self.options = options
        self.started = False

    def __enter__(self) -> "ray_session":
        ray = _ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.options.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"could not join the Ray cluster at {self.options.address or 'a new local one'}: "
                                     f"{exc}") from None
            self.started = True
        res = ray.cluster_resources()
        self.cpus = max(1, int(res.get("CPU", 1)))
        self.gpus = int(res.get("GPU", 0))
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            _ray().shutdown()


def _fail_once() -> None:
    """Fault injection for the tests (module docstring): kill this worker once."""
    flag = os.environ.get("DUPSCOPE_RAY_FAIL_ONCE")
    if flag:
        try:
            os.remove(flag)
        except FileNotFoundError:
            return
        os._exit(17)


class _Embedder:
    """One ONNX session on a worker; embeds one shard of paths per call."""

    def __init__(self, spec, device: str, threads: int, layout: bool, batch_size: int | None, dtype: str) -> None:
        from .embed import create_session

        self.spec, self.layout, self.batch_size, self.dtype = spec, layout, batch_size, dtype
        self.threads = threads
        self.session = create_session(spec, device=device, threads=threads)

    def embed(self, rows: np.ndarray, paths: Sequence[str]):
        from .embed import embed_images as embed_local

        _fail_once()
        r = embed_local(list(paths), self.spec, batch_size=self.batch_size, workers=self.threads,
                        dtype=self.dtype, layout=self.layout, onnx_session=self.session)
        return (rows, r.embeddings, r.ok, r.errors, r.widths, r.heights, r.layout, r.device,
                r.decode_cpu_seconds, r.inference_seconds, r.decode_wait_seconds)


def embed_images(paths: Sequence[str], spec, *, session: ray_session, batch_size: int | None = None,
                 device: str = "auto", dtype: str = "float32", layout: bool = False, resume=None,
                 on_batch: Callable | None = None, progress: Callable[[int], None] | None = None):
    """:func:`dupscope.embed.embed_images` on the cluster: the same :class:`~dupscope.embed.EmbedResult`
    (same rows, same values), computed by embedding actors one shard at a time (module docstring).

    ``resume`` and ``on_batch`` are those of the in-process function (a checkpoint's rows are
    skipped; each finished shard is handed to ``on_batch``)."""
    from .embed import EmbedResult
    from .images import LAYOUT_SIDE

    ray = _ray()
    t0 = time.perf_counter()
    opts = session.options
    n = len(paths)
    dt = np.dtype(dtype)
    emb = None
    ok = np.zeros(n, bool)
    errors = [""] * n
    widths = np.zeros(n, np.int32)
    heights = np.zeros(n, np.int32)
    lay = np.zeros((n, LAYOUT_SIDE * LAYOUT_SIDE), np.float16) if layout else None
    todo = np.arange(n)
    if resume is not None:
        done_mask, prev = resume
        emb = np.array(prev.embeddings, dtype=dt) if prev.embeddings.shape[1] else None
        ok = np.asarray(prev.ok, bool) & done_mask
        errors = [e if d else "" for e, d in zip(prev.errors, done_mask)]
        widths, heights = np.array(prev.widths, np.int32), np.array(prev.heights, np.int32)
        if lay is not None and prev.layout is not None:
            lay = np.array(prev.layout, np.float16)
        todo = np.flatnonzero(~np.asarray(done_mask, bool))
    shards = [todo[s:s + opts.shard_rows] for s in range(0, len(todo), max(1, opts.shard_rows))]
    gpu = session.gpus > 0 and str(device).split(":")[0] in ("auto", "cuda")
    cpus = opts.actor_cpus or min(4, session.cpus)
    n_actors = max(1, min(len(shards), session.gpus if gpu else max(1, session.cpus // cpus)))
    actor = ray.remote(num_cpus=cpus, num_gpus=1 if gpu else 0, max_restarts=opts.retries,
                       max_task_retries=opts.retries)(_Embedder)
    worker_device = ("cuda" if gpu else "cpu")
    actors = [actor.remote(spec, worker_device, cpus, layout, batch_size, dt.name) for _ in range(n_actors)]
    stats = {"decode": 0.0, "inference": 0.0, "wait": 0.0}
    used = worker_device
    done = n - len(todo)
    pending: dict = {}
    queue = list(range(len(shards)))[::-1]

    def submit(a) -> None:
        s = queue.pop()
        rows = shards[s]
        pending[actors[a].embed.remote(rows, [paths[r] for r in rows.tolist()])] = a

    for a in range(n_actors):
        for _ in range(2):  # one shard ahead per actor, so it never waits for the driver
            if queue:
                submit(a)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            a = pending.pop(ready[0])
            (rows, e, r_ok, r_err, r_w, r_h, r_lay, used, dec, inf, wait) = ray.get(ready[0])
            if emb is None:
                emb = np.zeros((n, e.shape[1]), dt)
            emb[rows] = e
            ok[rows], widths[rows], heights[rows] = r_ok, r_w, r_h
            for r, msg in zip(rows.tolist(), r_err):
                errors[r] = msg
            if lay is not None and r_lay is not None:
                lay[rows] = r_lay
            stats["decode"] += dec
            stats["inference"] += inf
            stats["wait"] += wait
            done += len(rows)
            if on_batch is not None:
                on_batch(rows, EmbedResult(emb, ok, errors, widths, heights, layout=lay))
            if progress is not None:
                progress(done)
            if queue:
                submit(a)
    finally:
        for x in actors:
            ray.kill(x)
    if emb is None:
        emb = np.zeros((n, spec.dim or 0), dt)
    return EmbedResult(emb, ok, errors, widths, heights, device=used, seconds=time.perf_counter() - t0, model=spec,
                       decode_cpu_seconds=stats["decode"], inference_seconds=stats["inference"],
                       decode_wait_seconds=stats["wait"], layout=lay)


def _band(embeddings: np.ndarray, k: int, tiles: tuple[int, int], valid, tile: int, threads: int, first_row: int):
    from .engine import band_topk

    _fail_once()
    index, sim = band_topk(embeddings, k, tiles, tile=tile, valid=valid, threads=threads)
    return first_row, index[first_row:], sim[first_row:]


def band_first_row(begin: int, n: int, tile: int) -> int:
    """The first row a band starting at tile ``begin`` touches (rows before it get nothing from
    it: its tiles (I, J) have I at least the block of ``begin``, and J >= I)."""
    blocks = -(-n // tile)
    lo, hi = 0, blocks - 1
    while lo < hi:  # the last block row whose first tile is at or before `begin`
        mid = (lo + hi + 1) // 2
        if mid * blocks - mid * (mid - 1) // 2 <= begin:
            lo = mid
        else:
            hi = mid - 1
    return lo * tile


def topk(embeddings: np.ndarray, k: int, *, session: ray_session, valid: np.ndarray | None = None,
         tile: int | None = None, progress: Callable[[int, int], None] | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dupscope.topk` on the cluster, on the CPU: the same (index int32, similarity
    float16) lists, from band tasks merged per row (module docstring)."""
    from .engine import _check_tile, merge_topk, tile_ranges

    ray = _ray()
    opts = session.options
    x = np.ascontiguousarray(embeddings)
    n = len(x)
    t = min(_check_tile(tile, "cpu"), -(-n // 16) * 16)
    bands = tile_ranges(n, opts.bands or 4 * session.cpus, t)
    ref = ray.put(x)
    vref = ray.put(None if valid is None else np.asarray(valid, bool))
    task = ray.remote(num_cpus=opts.band_cpus, max_retries=opts.retries)(_band)
    futures = [task.remote(ref, int(k), r, vref, t, opts.band_cpus, band_first_row(r[0], n, t)) for r in bands]
    index = np.full((n, int(k)), -1, np.int32)
    sim = np.full((n, int(k)), np.nan, np.float32)
    pending = list(futures)
    finished = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        lo, bi, bs = ray.get(ready[0])
        index[lo:], sim[lo:] = merge_topk((index[lo:], sim[lo:]), (bi, bs))
        finished += 1
        if progress is not None:
            progress(finished, len(futures))
    return index, sim.astype(np.float16)


def _verify_chunk(paths, a, b, config, layout):
    from .verify import verify_pairs as verify_local

    return verify_local(paths, a, b, config, layout=layout)


def verify_pairs(paths: Sequence[str], a: np.ndarray, b: np.ndarray, config=None, *, session: ray_session,
                 progress: Callable[[int], None] | None = None, kept=None, layout: np.ndarray | None = None):
    """:func:`dupscope.verify.verify_pairs` on the cluster: the same :class:`~dupscope.verify.Evidence`,
    from tasks of :attr:`RayOptions.pair_rows` pairs in order of their lower row (``kept`` is
    ignored: the grey images phase 1 kept live in this process)."""
    from .verify import Evidence, VerifyConfig

    ray = _ray()
    opts = session.options
    config = config or VerifyConfig()
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ev = Evidence.empty(len(a))
    if not len(a):
        return ev
    order = np.lexsort((np.maximum(a, b), np.minimum(a, b)))
    pref = ray.put(list(paths))
    lref = ray.put(None if layout is None else np.asarray(layout))
    cpus = max(1, min(opts.actor_cpus or 1, session.cpus))
    task = ray.remote(num_cpus=cpus, max_retries=opts.retries)(_verify_chunk)
    local = VerifyConfig(**{**config.__dict__, "workers": cpus})
    chunks = [order[s:s + opts.pair_rows] for s in range(0, len(order), max(1, opts.pair_rows))]
    futures = {task.remote(pref, a[c], b[c], local, lref): c for c in chunks}
    pending = list(futures)
    done = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        c = futures[ready[0]]
        part = ray.get(ready[0])
        for name in ("inliers", "coverage", "mirrored", "checked"):
            getattr(ev, name)[c] = getattr(part, name)
        done += len(c)
        if progress is not None:
            progress(done)
    return ev
