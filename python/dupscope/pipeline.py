"""Phase 1 end to end: annotations -> images -> embeddings -> similarity -> HDF5.

:func:`compute_similarity` is what ``dupscope similarity`` runs. It reads the annotation file,
decodes and embeds every image (failures are recorded, not fatal), computes the similarity of all
pairs with the compiled engine and writes one HDF5 file (docs/SCHEMA.md) through
:class:`dupscope.store.SimilarityWriter`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import defaults
from .annotations import ImageTable, load_annotations
from .checkpoint import EmbeddingCheckpoint, checkpoint_key
from .device import parse_device, require_gpu
from .embed import embed_images
from .errors import OutputError, PipelineError
from .fusion import fuse_embeddings
from .images import PREPROCESS, failure_kind
from .models import ModelSpec, default_model, get_model
from .pairs import neighbor_pairs
from .store import OutputLock, SimilarityWriter, check_output, printable
from .verify import KeptGreys, VerifyConfig, verifier_id

if TYPE_CHECKING:
    from .cluster import RayOptions

__all__ = ["compute_similarity", "decide_dense", "PipelineError", "DENSE_MAX_BYTES", "DENSE_MAX_FREE_FRACTION"]

#: ``dense=None`` writes the full matrix only when it needs less than this many bytes ...
DENSE_MAX_BYTES = 8 * 1024**3
#: ... and less than this fraction of the free space where the file goes; past either, a matrix
#: nobody asked for would crowd out everything else on the disk (1M images need 2 TB).
DENSE_MAX_FREE_FRACTION = 0.25

_THRESHOLDS = (0.95, 0.9)
#: Summary thresholds of models whose similarities live on another scale. dupscope-v3's fused
#: embeddings (centred, whitened, blended with their neighbours) put unrelated images near 0.5
#: and copies lower than a raw network's cosine: on the accuracy benchmark (2,599 images) its
#: precision-0.95 threshold is 0.65 and its best-F1 threshold 0.75 (benchmarks/ACCURACY.md).
_MODEL_THRESHOLDS = {"dupscope-v3": (0.9, 0.8, 0.7)}
#: Verified files hold the final score (dupscope.scoring): a probability-like value whose 0.5 is
#: where a copy and a look-alike were equally likely when it was fitted.
_VERIFIED_THRESHOLDS = (0.95, 0.9, 0.5)


def decide_dense(n: int, output: str | os.PathLike) -> tuple[bool, str]:
    """Whether to write the dense (N, N) matrix when the caller did not say.

    Parameters
    ----------
    n : int
        Number of images.
    output : path-like
        Output file; the free space of its folder is what counts.

    Returns
    -------
    dense : bool
        True when the float16 matrix (``2 N^2`` bytes) is below both :data:`DENSE_MAX_BYTES` and
        :data:`DENSE_MAX_FREE_FRACTION` of the free disk space.
    reason : str
        A sentence for the log.
    """
    need = 2 * n * n
    folder = Path(output).absolute().parent
    free = shutil.disk_usage(folder if folder.exists() else Path.cwd()).free
    if need < DENSE_MAX_BYTES and need < DENSE_MAX_FREE_FRACTION * free:
        return True, f"dense matrix: {_gb(need)} ({_gb(free)} free)"
    return False, (
        f"writing neighbours only: the dense {n} x {n} matrix would need {_gb(need)}, over "
        f"{'8 GiB' if need >= DENSE_MAX_BYTES else f'{DENSE_MAX_FREE_FRACTION:.0%} of the {_gb(free)} free'}; "
        "pass --dense to force it"
    )


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1024**3:.2f} GiB" if nbytes >= 1024**3 else f"{nbytes / 1024**2:.1f} MiB"


def _annotations_sha256(path: str, table: ImageTable) -> str:
    """sha256 of the annotation file; for a folder, tar shards or Parquet files (which hold the
    images themselves), of their list of image paths."""
    h = hashlib.sha256()
    if table.format in ("folder", "webdataset", "parquet"):
        for p in table.paths:
            h.update(p.encode("utf-8", "surrogateescape") + b"\n")
        return h.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compute_similarity(
    annotations: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    append: str | os.PathLike | None = None,
    reference: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    model: str | os.PathLike | ModelSpec | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    k: int = defaults.K,
    dense: bool | None = None,
    keep_embeddings: bool = False,
    path_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
    progress: bool = True,
    overwrite: bool = True,
    tile: int | None = None,
    verify: bool = True,
    backend: str = "inprocess",
    ray_options: "RayOptions | None" = None,
) -> dict[str, Any]:
    """Embed every image of an annotation file and write the similarity HDF5 file.

    Parameters
    ----------
    annotations : path-like
        COCO JSON, CSV/TSV, JSON Lines, a list of paths, or a folder (see
        :func:`dupscope.annotations.load_annotations`).
    output : path-like
        HDF5 file to write (written as ``<output>.partial`` and renamed when complete); None
        with ``append``.
    append : path-like, optional
        Add the images to this existing file instead (:func:`dupscope.append.append_similarity`:
        only they are embedded; the file's model, fit, k and verification are used, and the
        options that would change them must be left at their defaults).
    reference : path-like, optional
        Compare the images with this file's instead, writing ``output``
        (:func:`dupscope.reference.reference_similarity`; the reference is only read).
    image_root : path-like, optional
        Folder that relative image paths are relative to (default: the annotation file's folder).
    model : str, path or ModelSpec, optional
        ``"dupscope-v3"`` (the copy detector, post-processed per data set by
        :func:`dupscope.fusion.fuse_embeddings`), ``"dupscope-v3-int8"`` (the same with the
        network quantised to int8), ``"efficientnet-lite0"`` (the network's pooled embedding),
        ``"dct32"``, or an ONNX file. Default: :func:`dupscope.models.default_model` (the int8
        network on a CPU with VNNI, else ``"dupscope-v3"``).
    device : {"auto", "cpu", "cuda", "cuda:N"} or dupscope.device.Device
        Where the model and the similarity engine run (the same GPU for both).
    batch_size, workers : int, optional
        Model batch size (default 32) and decode threads (default: CPU count).
    threads : int, optional
        onnxruntime intra-op threads on the CPU (default: see :func:`dupscope.embed.embed_images`).
    k : int
        Neighbours kept per image.
    dense : bool, optional
        Write the full (N, N) matrix. None decides by size (:func:`decide_dense`): dense when it
        needs less than 8 GiB and less than 25% of the free disk space, else neighbours only.
    keep_embeddings : bool
        Ignored (kept for old callers): since schema version 2 the embeddings are always stored
        (float16): what the engine compared (``embeddings``) and, for a model with a fusion
        (``dupscope-v3``), its raw output (``embeddings_raw``) and fit (``fusion/``).
    path_column, label_column, split_column : str, optional
        Column names for CSV/JSON Lines input.
    progress : bool
        Show rich progress bars and print the summary.
    overwrite : bool
        Replace an existing output file (only once the new one is complete).
    tile : int, optional
        Similarity tile (and HDF5 chunk) edge; the engine's default when None.
    verify : bool
        Check the candidate neighbour pairs geometrically (:mod:`dupscope.verify`) and rank the
        neighbour lists by the final score (:mod:`dupscope.scoring`); False keeps the engine's
        similarity as the neighbours' score.
    backend : {"inprocess", "ray"}
        Where phase 1's heavy steps run: this process (default), or tasks on a Ray cluster
        (:mod:`dupscope.cluster`: the same file, neighbour lists only, so ``dense`` must not be
        True).
    ray_options : dupscope.cluster.RayOptions, optional
        The cluster's address and how the work is cut into tasks (``backend="ray"``).

    Returns
    -------
    dict
        Summary: ``n_images``, ``n_ok``, ``n_failed``, ``failures`` (reason kind -> count),
        ``failed_examples`` (up to 10 ``(path, reason)``), ``seconds``, ``embed_seconds``,
        ``similarity_seconds``, ``images_per_second``, the embedding stage's breakdown
        ``decode_cpu_seconds`` (CPU time of the decode threads, summed), ``inference_seconds``
        (wall time in the model) and ``decode_wait_seconds`` (wall time the model waited for
        decoded images), ``postprocess_seconds`` (fusion of multi-branch embeddings, 0 for
        other models), and the HDF5 stage's ``metadata_write_seconds`` (image table) and
        ``similarity_write_seconds`` (similarity, top-k and their writes, which overlap), ``pairs_above`` (threshold -> number of
        image pairs in the neighbour lists at or above it), ``dense``, ``device``, ``model``,
        ``output``.

    Raises
    ------
    AnnotationError
        The annotation file is unusable.
    ModelError
        The model cannot be used.
    PipelineError
        No image at all could be read, or the output cannot be written.
    """
    if backend not in ("inprocess", "ray"):
        raise PipelineError(f"backend must be 'inprocess' or 'ray', not {backend!r}")
    if backend == "ray":
        if append is not None or reference is not None:
            raise PipelineError("the Ray backend runs full runs only: leave out append and reference "
                                "(they embed only the new images, in this process)")
        if dense:
            raise PipelineError("the Ray backend writes neighbour lists only (the dense N x N matrix is written by "
                                "one process): pass --no-dense (dense=False), or use the in-process backend")
        dense = False
    if append is not None or reference is not None:
        return _incremental(annotations, output, append, reference, image_root=image_root, model=model,
                            device=device, batch_size=batch_size, workers=workers, threads=threads, k=k,
                            dense=dense, path_column=path_column, label_column=label_column,
                            split_column=split_column, progress=progress, overwrite=overwrite, verify=verify)
    if output is None:
        raise OutputError("compute_similarity needs an output file")
    t_start = time.perf_counter()
    # The output is checked and locked before anything else, so that a bad output or a second
    # run writing the same file fails at once rather than after the embedding.
    device = parse_device(device)  # once, for every stage
    require_gpu(device)  # a missing GPU is said at once, not after reading the annotations
    output = check_output(output, overwrite=overwrite)
    with OutputLock(output) as lock:
        return _compute_similarity(annotations, output, lock, t_start, image_root=image_root, model=model,
                                   device=device, batch_size=batch_size, workers=workers, threads=threads, k=k,
                                   dense=dense, keep_embeddings=keep_embeddings, path_column=path_column,
                                   label_column=label_column, split_column=split_column, progress=progress,
                                   overwrite=overwrite, tile=tile, verify=verify, backend=backend,
                                   ray_options=ray_options)


def _incremental(annotations, output, append, reference, *, image_root, model, device, batch_size, workers,
                 threads, k, dense, path_column, label_column, split_column, progress, overwrite, verify):
    """compute_similarity with ``append`` or ``reference``: the stored file decides the model and
    the rest, so options that would change them are refused rather than ignored."""
    from .append import append_similarity
    from .errors import AppendError
    from .reference import reference_similarity

    if append is not None and reference is not None:
        raise AppendError("append and reference cannot be given together")
    changed = [name for name, value, default in (("model", model, None), ("k", k, defaults.K),
                                                 ("dense", dense, None), ("verify", verify, True))
               if value != default]
    if changed:
        raise AppendError(f"{', '.join(changed)} cannot be given with {'append' if append else 'reference'}: "
                          "the stored file's own is used")
    common = dict(image_root=image_root, device=device, batch_size=batch_size, workers=workers, threads=threads,
                  path_column=path_column, label_column=label_column, split_column=split_column, progress=progress)
    if append is not None:
        if output is not None and os.path.abspath(output) != os.path.abspath(append):
            raise AppendError("with append, the output is the appended file: leave output out")
        return append_similarity(annotations, append, **common)
    if output is None:
        raise OutputError("a reference run needs an output file")
    return reference_similarity(annotations, reference, output, overwrite=overwrite, **common)


def _refuse_inputs_as_output(output: Path, table) -> None:
    """The output must not be the annotation file or one of the listed images."""
    out = os.path.normcase(os.path.realpath(output))
    if table.source and os.path.exists(table.source) and os.path.normcase(os.path.realpath(table.source)) == out:
        raise OutputError(f"the output {output} is the annotation file itself: choose another output")
    for path in table.resolved:
        if not path:
            continue
        same = os.path.normcase(os.path.abspath(path)) == out or (
            # the same file through links, looked up only when the name could match at all
            os.path.basename(path) == output.name and os.path.exists(path) and os.path.samefile(path, output))
        if same:
            raise OutputError(f"the output {output} is one of the listed images ({path}): choose another output")


def _compute_similarity(annotations, output: Path, lock, t_start: float, *, image_root, model, device, batch_size,
                        workers, threads, k, dense, keep_embeddings, path_column, label_column, split_column,
                        progress, overwrite, tile, verify, backend="inprocess", ray_options=None) -> dict[str, Any]:
    from contextlib import ExitStack

    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    table = load_annotations(annotations, image_root=image_root, path_column=path_column,
                             label_column=label_column, split_column=split_column)
    _refuse_inputs_as_output(output, table)
    spec = model if isinstance(model, ModelSpec) else get_model(default_model(device) if model is None else model)
    n = len(table)
    console.print(f"[bold]{n}[/bold] images from {table.source} ({table.format}); model {spec.describe()}")
    if dense is None:
        dense, why = decide_dense(n, output)
        console.print(why)

    bars = _progress_bars(console) if progress else nullcontext(None)
    with ExitStack() as stack:
        cluster = None
        if backend == "ray":
            from . import cluster as cluster_mod

            cluster = stack.enter_context(cluster_mod.ray_session(ray_options or cluster_mod.RayOptions()))
            console.print(f"Ray backend: a cluster of {cluster.cpus} CPUs and {cluster.gpus} GPUs", markup=False,
                          highlight=False)
        bar = stack.enter_context(bars)
        return _phase_1(console, bar, table, spec, output, lock, t_start, n=n, device=device, batch_size=batch_size,
                        workers=workers, threads=threads, k=k, dense=dense, tile=tile, verify=verify,
                        image_root=image_root, cluster=cluster, overwrite=overwrite)


def _phase_1(console, bar, table, spec, output, lock, t_start, *, n, device, batch_size, workers, threads, k,
             dense, tile, verify, image_root, cluster, overwrite) -> dict[str, Any]:
    """Phase 1 after the annotations are read: embed, post-process, top-k, verify, write."""
    task = bar.add_task("embedding", total=n, unit="img") if bar else None
    t0 = time.perf_counter()
    # A fused model's raw output is only read by the post-processing, in float32 blocks:
    # keep it in float16 (half the memory of the largest array of a big run; on the accuracy
    # benchmark's three data sets AP was the same to 4 decimals as from float32).
    # Finished rows are checkpointed in blocks beside the output: the same command after a
    # crash embeds only the rest (dupscope.checkpoint).
    dtype = "float16" if spec.fusion is not None else "float32"
    ckpt = EmbeddingCheckpoint(output, checkpoint_key(table.resolved, spec.sha256, PREPROCESS, batch_size, str(device),
                                                      dtype, bool(verify)), n)
    resume = ckpt.load()
    if ckpt.note:
        console.print(ckpt.note, markup=False, highlight=False)
    resumed = int(resume[0].sum()) if resume is not None else 0
    if resumed:
        console.print(f"resuming: {resumed} of {n} images were embedded by an interrupted run "
                      f"(checkpoint {ckpt.folder})", markup=False, highlight=False)
    # Verification describes grey images of the candidates' files: the decode threads keep
    # them on the way (up to VerifyConfig.keep_bytes) rather than verification decoding again.
    kept = KeptGreys(VerifyConfig.side, VerifyConfig.keep_bytes) if verify and cluster is None else None
    if cluster is not None:
        from . import cluster as cluster_mod

        result = cluster_mod.embed_images(
            table.resolved, spec, session=cluster, batch_size=batch_size, device=device.kind, dtype=dtype,
            layout=verify, resume=resume, on_batch=ckpt.add,
            progress=(lambda done: bar.update(task, completed=done)) if bar else None)
    else:
        result = embed_images(
            table.resolved, spec, batch_size=batch_size, workers=workers, device=device, threads=threads,
            progress=(lambda done: bar.update(task, completed=done)) if bar else None,
            dtype=dtype, layout=verify, resume=resume, on_batch=ckpt.add, keep_greys=kept,
        )
    embed_seconds = time.perf_counter() - t0
    if not result.ok.any():
        common = Counter(result.errors).most_common(1)[0][0] if n else ""
        raise PipelineError(
            f"none of the {n} images could be read (e.g. {table.resolved[0]}: {common}); "
            "check the paths and --image-root"
        )
    # Data-set level post-processing of multi-branch models (dupscope-v3): the fused
    # embedding is what the engine compares and what the file keeps as `embeddings`.
    t_post = time.perf_counter()
    sim_device = device.engine  # the same GPU as the model's, index included
    embeddings, postprocess, fusion_attrs, fit = result.embeddings, "none", {}, None
    raw = result.embeddings  # the pair score reads the raw cosines; a fused model's is stored
    if spec.fusion is not None:
        fused = fuse_embeddings(result.embeddings, result.ok, spec.fusion, device=sim_device)
        embeddings, postprocess = fused.embeddings, fused.description
        fusion_attrs = {"fusion_pictures": fused.n_pictures,
                        "fusion_axes": np.asarray(fused.axes, np.int32),
                        "fusion_neighbours": fused.neighbours}
        fit = fused.fit
        result.embeddings = embeddings
        console.print(f"embedding post-processing: {postprocess}", markup=False, highlight=False)
    postprocess_seconds = time.perf_counter() - t_post
    sim_task = bar.add_task("similarity", total=None, unit="tile") if bar else None

    def tile_progress(done: int, total: int) -> None:
        bar.update(sim_task, completed=done, total=total)

    t1 = time.perf_counter()
    try:
        with SimilarityWriter(output, overwrite=overwrite, lock=lock) as w:
            t_meta = time.perf_counter()
            w.write_images(paths=table.paths, resolved=table.resolved, labels=table.labels,
                           splits=table.splits, ok=result.ok, errors=result.errors,
                           widths=result.widths, heights=result.heights)
            # Schema 2: the embeddings (and a fused model's raw output and fit) are always
            # kept, so rows can be added later without embedding the old images again.
            w.write_embeddings(embeddings)
            if fit is not None:
                w.write_embeddings(raw, "embeddings_raw")
                fit.to_group(w.h5.create_group("fusion"))
            if not verify:
                del raw
            metadata_seconds = time.perf_counter() - t_meta
            t_sim = time.perf_counter()
            if cluster is not None:
                from . import cluster as cluster_mod

                lists = cluster_mod.topk(embeddings, k, session=cluster, valid=result.ok, tile=tile,
                                         progress=tile_progress if bar else None,
                                         checkpoint=ckpt.ensure_folder() / "topk")
                neighbours = w.write_similarity(embeddings, k=k, dense=False, tile=tile, valid=result.ok,
                                                neighbours=lists, device="cpu")
            else:
                neighbours = w.write_similarity(embeddings, k=k, dense=dense, tile=tile, device=sim_device,
                                                valid=result.ok, progress=tile_progress if bar else None)
            similarity_write_seconds = time.perf_counter() - t_sim
            t_ver = time.perf_counter()
            n_checked = 0
            if verify:
                verifier = None
                if cluster is not None:
                    from functools import partial

                    from . import cluster as cluster_mod

                    verifier = partial(cluster_mod.verify_pairs, session=cluster)
                n_checked = _verify(w, neighbours, raw, table.resolved, spec, bar, result=result,
                                    embeddings=embeddings, device=sim_device, kept=kept, verifier=verifier)
                kept = None
                del raw
            verify_seconds = time.perf_counter() - t_ver
            w.attrs.update({
                "model": spec.name,
                "model_sha256": spec.sha256,
                "preprocess": PREPROCESS,
                "model_input": f"{spec.layout} {spec.channels}x{spec.height}x{spec.width} {spec.colour} "
                               f"resize={spec.resize}",
                "embedding_dim": int(embeddings.shape[1]),
                "embedding_postprocess": postprocess,
                **fusion_attrs,
                "embed_device": result.device,
                "annotations": printable(table.source),
                "annotations_format": table.format,
                "annotations_sha256": _annotations_sha256(table.source, table),
                "image_root": "" if image_root is None else printable(str(Path(image_root).absolute())),
                "score": "verified" if verify else "embedding",
                **({"verifier": verifier_id()} if verify else {}),
            })
            sim_used = w.attrs["device"]
    except OSError as exc:
        raise PipelineError(str(exc)) from None
    similarity_seconds = time.perf_counter() - t1
    ckpt.remove()  # the output is complete

    from .store import SimilarityFile

    with SimilarityFile(output) as f:
        index, sims = f.neighbors()
    failures = Counter(failure_kind(e) for e, ok in zip(result.errors, result.ok) if not ok)
    failed_examples = [(table.paths[i], result.errors[i]) for i in np.flatnonzero(~result.ok)[:10]]
    # Each neighbour pair once, for the summary's counts above thresholds.
    pair_sims = neighbor_pairs(index, sims)[2].astype(np.float32)
    summary = {
        "output": str(output),
        "n_images": n,
        "n_ok": int(result.ok.sum()),
        "n_failed": int((~result.ok).sum()),
        "failures": dict(failures),
        "failed_examples": failed_examples,
        "seconds": time.perf_counter() - t_start,
        "embed_seconds": embed_seconds,
        "similarity_seconds": similarity_seconds,
        "images_per_second": n / embed_seconds if embed_seconds > 0 else float("inf"),
        "decode_cpu_seconds": result.decode_cpu_seconds,
        "inference_seconds": result.inference_seconds,
        "decode_wait_seconds": result.decode_wait_seconds,
        "postprocess_seconds": postprocess_seconds,
        "metadata_write_seconds": metadata_seconds,
        "similarity_write_seconds": similarity_write_seconds,
        "verify_seconds": verify_seconds,
        "resumed_images": resumed,
        "pairs_verified": n_checked,
        "pairs_above": {t: int(np.count_nonzero(pair_sims >= t))
                        for t in (_VERIFIED_THRESHOLDS if verify else _MODEL_THRESHOLDS.get(spec.family, _THRESHOLDS))},
        "dense": bool(dense),
        "device": f"embed {result.device}, similarity {sim_used}",
        "model": spec.name,
        "backend": "ray" if cluster is not None else "inprocess",
    }
    _print_summary(console, summary, k)
    return summary


def _verify(writer, neighbours, raw: np.ndarray, paths, spec: ModelSpec, bar, *, result, embeddings,
            device, kept=None, verifier=None) -> int:
    """Verify the candidate pairs among the engine's neighbour lists ``(index, similarity)``, and
    those the layout descriptors propose, and store the final scores in the file being written;
    returns the number of pairs checked."""
    from .scoring import candidate_bar, layout_lists, layout_pairs, score_neighbors, second_chance_bar

    extra = None
    if result.layout is not None:
        lists = layout_lists(result.layout, result.ok, device=device)
        extra = layout_pairs(*lists)
        writer.write_array("layout/descriptor", np.asarray(result.layout, np.float16))
        writer.write_array("layout/index", lists[0])
        writer.write_array("layout/similarity", lists[1])
    # The engine's own lists, before re-ranking: what an append run merges new rows into.
    writer.write_array("engine/index", neighbours[0])
    writer.write_array("engine/similarity", neighbours[1])

    task = bar.add_task("verifying", total=None, unit="pair") if bar else None
    columns = spec.fusion.branches[0].dim if spec.fusion is not None else None
    bar_value, rank = candidate_bar(spec.family)
    scored = score_neighbors(
        *neighbours, raw, paths, bar=bar_value, rank=rank, columns=columns, extra=extra, embeddings=embeddings,
        kept=kept, layout=result.layout, verifier=verifier, second_bar=second_chance_bar(spec.family), progress=(lambda done, total: bar.update(task, completed=done, total=total)) if bar else None,
    )
    writer.write_scores(scored)
    return scored.n_checked


def _progress_bars(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second with the task's unit (images or tiles)."""

        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.1f} {task.fields.get('unit', '')}/s")

    return Progress(
        TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


def _print_summary(console, s: dict, k: int) -> None:
    console.print(
        f"[bold]{s['n_ok']}[/bold] of {s['n_images']} images embedded in {s['embed_seconds']:.1f} s "
        f"({s['images_per_second']:.1f} images/s, {s['device']}); similarity in "
        f"{s['similarity_seconds']:.1f} s; total {s['seconds']:.1f} s"
    )
    if s["n_failed"]:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(s["failures"].items(), key=lambda x: -x[1]))
        console.print(f"[yellow]{s['n_failed']} images failed[/yellow] ({kinds}):")
        for path, reason in s["failed_examples"]:
            console.print(f"  {path}: {reason}", markup=False, highlight=False)
        if s["n_failed"] > len(s["failed_examples"]):
            console.print(f"  ... and {s['n_failed'] - len(s['failed_examples'])} more (images/error in the file)")
    pairs = ", ".join(f"{n} pairs >= {t}" for t, n in s["pairs_above"].items())
    console.print(f"{pairs} (counted in the {k} neighbours of each image); wrote {s['output']}"
                  f" ({'dense matrix and neighbours' if s['dense'] else 'neighbours only'})")

