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
- **Top-k**: the rows are cut into blocks of whole tiles (:func:`row_blocks`); a task takes
  the pairs inside one block or between two blocks (:func:`dupscope.engine.pair_topk`), each
  pair computed once and offered to both rows, and returns float32 lists; the driver merges them
  per row (:func:`dupscope.engine.merge_topk`). The merged lists equal the in-process engine's
  (same kernel, same tiles, same order of ties).
- **Verification**: the candidate pairs, in order of their lower row, are cut into tasks of
  :attr:`RayOptions.pair_rows` pairs, each checked by :func:`dupscope.verify.verify_pairs`.
  The check's random draws are seeded by the pair, so the evidence does not depend on the cut.

A task whose worker dies is retried (:attr:`RayOptions.retries` times; embedding actors are
restarted), and the result is the same. Memory per task: a top-k task holds its two blocks of
normalised embeddings (float32, read from the object store, plus the engine's own copy) and
their k-lists, at most :data:`TASK_BYTES`; an embedding task one shard's pixels and outputs; a
verification task its pairs' features (bounded by
:attr:`dupscope.verify.VerifyConfig.cache_bytes`). The driver holds the embeddings and the
N x k lists.

The environment variable ``DUPSCOPE_RAY_FAIL_ONCE`` names a file for fault-injection tests: the
first embedding or top-k task that finds it deletes it and kills its own worker process.
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
    blocks : int or None
        Row blocks of the top-k: its tasks are the pairs of blocks (``blocks * (blocks + 1) / 2``
        tasks); default about 8 tasks per CPU of the cluster, and more blocks when a task would
        pass :data:`TASK_BYTES` (so a task's memory does not grow with N).
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
    blocks: int | None = None
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
    if not shards:  # everything came from the checkpoint
        return EmbedResult(emb if emb is not None else np.zeros((n, spec.dim or 0), dt), ok, errors, widths, heights,
                           device="", seconds=time.perf_counter() - t0, model=spec, layout=lay)
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


def _block_task(first: np.ndarray, second, k: int, tile: int, valid_first, valid_second, threads: int):
    """One task of :func:`topk`: the pairs inside ``first`` (``second`` None) or between the two
    blocks; returns the float32 lists (local indices), seconds and this worker's peak memory."""
    import resource

    from .engine import SimilarityJob, pair_topk

    _fail_once()
    t0 = time.perf_counter()
    if second is None:
        job = SimilarityJob(first, k=k, tile=tile, device="cpu", valid=valid_first, threads=threads)
        job.start().wait()
        index, sim = job.topk_values()
    else:
        index, sim = pair_topk(first, second, k, tile=tile, threads=threads,
                               valid=None if valid_first is None else (valid_first, valid_second))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return index, sim, time.perf_counter() - t0, peak


def row_blocks(n: int, blocks: int, tile: int) -> list[tuple[int, int]]:
    """``blocks`` ranges of rows (fewer when ``n`` is small), each a multiple of ``tile`` rows but
    the last: the blocks whose pairs are :func:`topk`'s tasks (then every tile of a task is one
    of the in-process engine's tiles)."""
    size = max(1, -(-n // max(1, blocks) // tile)) * tile
    return [(s, min(n, s + size)) for s in range(0, n, size)]


#: Memory a top-k task may use: two blocks of normalised embeddings (its input and the engine's
#: copy of each) and their lists. Bounds the rows per block whatever the cluster's size.
TASK_BYTES = 4 << 30


def _topk_key(x: np.ndarray, valid, k: int, tile: int, blocks) -> str:
    import hashlib

    h = hashlib.sha256(repr((x.shape, str(x.dtype), k, tile, blocks)).encode())
    for s in range(0, len(x), 1 << 16):
        h.update(memoryview(np.ascontiguousarray(x[s:s + (1 << 16)])).cast("B"))
    if valid is not None:
        h.update(np.asarray(valid, bool).tobytes())
    return h.hexdigest()


def topk(embeddings: np.ndarray, k: int, *, session: ray_session, valid: np.ndarray | None = None,
         tile: int | None = None, progress: Callable[[int, int], None] | None = None,
         stats: list | None = None, checkpoint: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dupscope.topk` on the cluster, on the CPU: the same (index int32, similarity
    float16) lists. The rows are cut into :attr:`RayOptions.blocks` blocks (more when a task
    would pass :data:`TASK_BYTES`); a task computes the pairs inside one block or between two,
    each pair once; the driver merges the lists per row (:func:`dupscope.engine.merge_topk`).

    ``stats``, when given, receives one ``dict(rows, tiles, seconds, peak_bytes)`` per task
    computed. ``checkpoint``, a folder: each finished task's lists are saved there (written
    whole, then renamed), and a later call on the same embeddings and settings takes them
    instead of computing those tasks again (a run stopped during the top-k resumes per task).
    """
    from pathlib import Path

    from .engine import effective_tile, merge_topk

    ray = _ray()
    opts = session.options
    x = np.ascontiguousarray(embeddings)
    n, d = x.shape
    k = int(k)
    t = effective_tile(n, tile, "cpu")
    per_row = 16 * d + 16 * k  # float32 twice (input, engine copy) + lists, for each of 2 blocks
    fewest = -(-n * per_row // TASK_BYTES)
    wanted = opts.blocks or max(1, int(np.ceil(np.sqrt(16 * session.cpus))))
    blocks = row_blocks(n, max(wanted, fewest), t)
    ok = None if valid is None else np.asarray(valid, bool)
    refs = [ray.put(x[a:b]) for a, b in blocks]
    vrefs = [ray.put(None if ok is None else ok[a:b]) for a, b in blocks]
    task = ray.remote(num_cpus=opts.band_cpus, max_retries=opts.retries)(_block_task)
    index = np.full((n, k), -1, np.int32)
    sim = np.full((n, k), np.nan, np.float32)
    pairs = [(p, q) for p in range(len(blocks)) for q in range(p, len(blocks))]
    saved: dict = {}
    folder = None
    if checkpoint is not None:
        folder = Path(checkpoint)
        folder.mkdir(parents=True, exist_ok=True)
        key = _topk_key(x, ok, k, t, blocks)
        if (folder / "key").exists() and (folder / "key").read_text().strip() != key:
            for f in folder.glob("task-*.npz"):
                f.unlink()
        (folder / "key").write_text(key + "\n")
        for p, q in pairs:
            f = folder / f"task-{p}-{q}.npz"
            if f.exists():
                try:
                    with np.load(f) as z:
                        saved[(p, q)] = (z["index"], z["sim"])
                except (OSError, ValueError, KeyError):
                    pass  # renamed into place whole; anything else is computed again

    def rows_of(p: int, q: int) -> np.ndarray:
        (a0, a1), (b0, b1) = blocks[p], blocks[q]
        return np.arange(a0, a1) if p == q else np.r_[np.arange(a0, a1), np.arange(b0, b1)]

    def merge(p: int, q: int, li: np.ndarray, ls: np.ndarray) -> None:
        rows = rows_of(p, q)
        glob = np.where(li >= 0, rows[np.maximum(li, 0)], -1).astype(np.int32)  # local -> global rows
        index[rows], sim[rows] = merge_topk((index[rows], sim[rows]), (glob, ls))

    for (p, q), (li, ls) in saved.items():
        merge(p, q, li, ls)
    jobs = {}
    for p, q in pairs:
        if (p, q) not in saved:
            second, vsecond = (None, None) if p == q else (refs[q], vrefs[q])
            jobs[task.remote(refs[p], second, k, t, vrefs[p], vsecond, opts.band_cpus)] = (p, q)
    pending = list(jobs)
    finished = len(saved)
    if progress is not None and finished:
        progress(finished, len(pairs))
    try:
        _merge_as_done(ray, pending, jobs, merge, folder, stats, progress, finished, len(pairs), blocks, t)
    finally:
        _cancel(ray, pending)
    return index, sim.astype(np.float16)


def _cancel(ray, refs) -> None:
    """Stop the tasks still running when the caller stops early (Ctrl-C, an error)."""
    for ref in refs:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - finished meanwhile, or the cluster is gone
            pass


def _merge_as_done(ray, pending: list, jobs: dict, merge, folder, stats, progress, finished: int, total: int,
                   blocks, t: int) -> None:
    """Merge each top-k task's lists as it finishes (``pending`` shrinks as they do)."""
    while pending:
        ready, rest = ray.wait(pending, num_returns=1)
        pending[:] = rest
        p, q = jobs[ready[0]]
        li, ls, seconds, peak = ray.get(ready[0])
        merge(p, q, li, ls)
        if folder is not None:
            tmp = folder / f"task-{p}-{q}.npz.tmp"
            with open(tmp, "wb") as fh:
                np.savez(fh, index=li, sim=ls)
            os.replace(tmp, folder / f"task-{p}-{q}.npz")
        finished += 1
        (a0, a1), (b0, b1) = blocks[p], blocks[q]
        if stats is not None:
            nb = (-(-(a1 - a0) // t)) * ((-(-(b1 - b0) // t)) if p != q else 1)
            tiles = nb * (nb + 1) // 2 if p == q else nb
            stats.append({"rows": (a1 - a0) + (b1 - b0 if p != q else 0), "tiles": int(tiles),
                          "seconds": float(seconds), "peak_bytes": int(peak)})
        if progress is not None:
            progress(finished, total)


def _verify_chunk(paths, a, b, config, layout):
    from .verify import verify_pairs as verify_local

    return verify_local(paths, a, b, config, layout=layout)


def verify_pairs(paths: Sequence[str], a: np.ndarray, b: np.ndarray, config=None, *, session: ray_session,
                 progress: Callable[[int], None] | None = None, kept=None, layout: np.ndarray | None = None,
                 features=None):
    """:func:`dupscope.verify.verify_pairs` on the cluster: the same :class:`~dupscope.verify.Evidence`,
    from tasks of :attr:`RayOptions.pair_rows` pairs in order of their lower row (``kept`` and
    ``features`` are ignored: the grey images phase 1 kept and the feature cache live in this
    process)."""
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
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            c = futures[ready[0]]
            part = ray.get(ready[0])
            for name in ("inliers", "coverage", "mirrored", "checked"):
                getattr(ev, name)[c] = getattr(part, name)
            done += len(c)
            if progress is not None:
                progress(done)
    finally:
        _cancel(ray, pending)
    return ev
