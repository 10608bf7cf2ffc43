"""Adding images to a finished similarity file without embedding the old ones again.

``dupscope similarity NEW --append sim.h5`` (:func:`append_similarity`) works from what a
schema-2 file keeps (docs/SCHEMA.md): every image's embedding, a fused model's raw output and fit,
the engine's own neighbour lists, the layout descriptors and lists, and every verified pair.

1. The new images are embedded with the file's model (its checksum must match), and a fused
   model's stored fit (:class:`dupscope.fusion.FusionFit`) is applied to them, with neighbour
   augmentation among the old and new rows. The old rows' embeddings are not touched, so no old
   pair's engine similarity moves.
2. The search covers only what is new (:mod:`dupscope.search`): each new row against every row,
   and each old row against the new ones, merged into its stored engine list.
3. The layout lists are merged the same way, candidate pairs are taken as in a full run, and only
   pairs never checked before are verified; every pair is scored by the data-set independent pair
   score (:mod:`dupscope.scoring`), so an old pair keeps its score.
4. The file is written anew beside the old one (``<file>.partial``) and renamed over it only when
   complete: an interrupted append leaves the old file as it was.

What differs from running the union from scratch: a fused model's fit (means, whitening) stays
the one fitted on the first images, and old rows keep their neighbour augmentation. Both only move
the engine's similarities, which choose candidates; pair scores do not depend on them.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import load_annotations
from .device import parse_device, require_gpu
from .embed import embed_images
from .errors import AppendError, PipelineError
from .images import PREPROCESS
from .models import get_model
from .store import OutputLock, SimilarityFile, SimilarityWriter, printable
from .verify import verifier_id

__all__ = ["append_similarity", "AppendError"]


def _merge_lists(index_a, sim_a, index_b, sim_b, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise union of two neighbour lists that name different rows (old rows' own lists and
    their new neighbours), best first by the float16 score, ties by lower index, the first ``k``."""
    idx = np.concatenate([index_a, index_b], axis=1).astype(np.int64)
    s = np.where(idx >= 0, np.concatenate([sim_a, sim_b], axis=1).astype(np.float32), -np.inf)
    order = np.lexsort((np.where(idx >= 0, idx, np.iinfo(np.int64).max), -s), axis=1)[:, :k]
    idx, s = np.take_along_axis(idx, order, axis=1), np.take_along_axis(s, order, axis=1)
    good = np.isfinite(s)
    return np.where(good, idx, -1).astype(np.int32), np.where(good, s, np.nan).astype(np.float16)


def _union_lists(old_index, old_sim, new_rows, all_rows, old_rows, k, *, valid_new, valid_all, valid_old):
    """The engine's lists of the union: new rows against every row, old lists merged with the new
    rows (engine similarity, float16)."""
    from .search import column_topk, query_topk

    n0, m = len(old_rows), len(new_rows)
    ids = n0 + np.arange(m)
    ni, ns = query_topk(new_rows, all_rows, k, exclude=ids, valid=valid_all)
    ci, cs = column_topk(new_rows, old_rows, k, query_ids=ids, valid_q=valid_new, valid_p=valid_old)
    oi, os_ = _merge_lists(old_index, old_sim, ci, cs, k)
    return np.concatenate([oi, ni]), np.concatenate([os_, ns])


def append_similarity(annotations: str | os.PathLike, target: str | os.PathLike, *, image_root=None,
                      device: str = "auto", batch_size: int | None = None, workers: int | None = None,
                      threads: int | None = None, path_column: str | None = None, label_column: str | None = None,
                      split_column: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Add the images of ``annotations`` to the similarity file ``target`` (see the module docstring).

    Returns
    -------
    dict
        ``n_old``, ``n_new``, ``n_images``, ``n_ok_new``, ``embed_seconds``, ``seconds``,
        ``pairs_verified`` (checked by this run), ``output``.

    Raises
    ------
    AppendError
        The file is of schema version 1, lacks what an append needs, was made by a model this
        installation does not have (or another version of it), or the new annotations repeat
        one of its images.
    """
    from rich.console import Console

    t_start = time.perf_counter()
    console = Console(stderr=True, quiet=not progress)
    target = Path(target)
    device = parse_device(device)
    require_gpu(device)
    if not target.is_file():
        raise AppendError(f"cannot append to {target}: no such file")
    with OutputLock(target) as lock:
        old, spec, table = open_stored(target, annotations, image_root=image_root, path_column=path_column,
                                       label_column=label_column, split_column=split_column)
        known = {os.path.normcase(os.path.abspath(p)): i for i, p in enumerate(old["resolved"])}
        repeated = [(p, known[os.path.normcase(os.path.abspath(r))]) for p, r in zip(table.paths, table.resolved)
                    if os.path.normcase(os.path.abspath(r)) in known]
        if repeated:
            shown = ", ".join(f"{printable(p)} (row {i})" for p, i in repeated[:3])
            raise AppendError(f"{len(repeated)} of the new images are already in {target}: {shown}"
                              f"{', ...' if len(repeated) > 3 else ''}; list only images the file does not have")
        verify = old["verified"]
        m, n0 = len(table), old["n"]
        console.print(f"appending [bold]{m}[/bold] images from {table.source} to {target} ({n0} images, "
                      f"model {spec.name})")
        result, embed_seconds = embed_new(table, spec, verify, device=device, batch_size=batch_size,
                                          workers=workers, threads=threads, progress=progress, console=console)
        summary = _combine_and_write(target, lock, old, table, result, spec, verify, console=console)
    summary.update({"n_old": n0, "n_new": m, "n_images": n0 + m, "n_ok_new": int(result.ok.sum()),
                    "embed_seconds": embed_seconds, "seconds": time.perf_counter() - t_start,
                    "output": str(target)})
    console.print(f"{target}: {n0} + {m} images; {summary['pairs_verified']} new pairs verified; "
                  f"{summary['seconds']:.1f} s", markup=False, highlight=False)
    return summary


def read_stored(target: Path) -> dict[str, Any]:
    """Everything of a finished file that an append or reference run needs, checked."""
    with SimilarityFile(target) as f:
        attrs = f.attrs
        if int(attrs.get("schema_version", 1)) < 2 or f.embeddings is None:
            raise AppendError(f"{target} is a schema-{attrs.get('schema_version', 1)} file without stored "
                              "embeddings: appending needs a file written by dupscope 0.2 or later (run the whole "
                              "set again once)")
        if not f.has_paths:
            raise AppendError(f"{target} names no images (written by write_similarity): nothing to append to")
        h5 = f.h5
        verified = f.verified
        out: dict[str, Any] = {
            "attrs": attrs, "n": f.n, "paths": f.paths, "resolved": f.resolved_paths, "labels": f.labels,
            "splits": f.splits, "errors": f.errors, "ok": f.ok, "widths": f.widths, "heights": f.heights,
            "embeddings": np.asarray(f.embeddings[()], np.float32), "verified": verified,
            "dense": f.similarity is not None, "k": int(attrs.get("k", 0)),
        }
        if "embeddings_raw" in h5:
            out["raw"] = np.asarray(h5["embeddings_raw"][()])
        if verified:
            for name in ("engine/index", "engine/similarity", "layout/descriptor", "layout/index",
                         "layout/similarity", "verified/a", "verified/b", "verified/inliers", "verified/coverage",
                         "verified/mirrored"):
                if name not in h5:
                    raise AppendError(f"{target} lacks {name}: appending needs a complete schema-2 file")
                out[name] = np.asarray(h5[name][()])
            out["engine"] = (out["engine/index"], out["engine/similarity"])
        else:  # an unverified file's neighbour lists are the engine's
            out["engine"] = f.neighbors()
    return out


def carry_attrs(w, attrs: dict, skip: tuple = ()) -> None:
    """Copy a stored file's root attributes into the file being written, except the writer's own
    (completion, creation time, versions) and ``skip``."""
    for key, value in attrs.items():
        if key not in ("complete", "created", "schema_version", "dupscope_version") + tuple(skip):
            w.attrs[key] = value


def fused_new_rows(target: Path, old: dict, result, spec):
    """The engine's rows for newly embedded images: a fused model's stored fit applied, with
    neighbour augmentation among the old and new rows; else the model's output. Returns
    (rows float32, the new raw output as float16 or None, the fit or None)."""
    from .fusion import FusionFit, apply_fit, augment_rows

    if spec.fusion is None:
        return np.asarray(result.embeddings, np.float32), None, None
    import h5py

    with h5py.File(target, "r") as h5:
        try:
            fit = FusionFit.from_group(h5["fusion"], spec.fusion)
        except (KeyError, ValueError) as exc:
            raise AppendError(f"{target}: the stored fusion fit cannot be used ({exc})") from None
    ok_old, ok_new = old["ok"], result.ok
    raw_new = np.asarray(result.embeddings)
    base_old, base_new = apply_fit(old["raw"], fit, ok_old), apply_fit(raw_new, fit, ok_new)
    rows = np.zeros_like(base_new)
    vn = np.flatnonzero(ok_new)
    ok = np.concatenate([ok_old, ok_new])
    keep = np.flatnonzero(ok)
    where = np.full(len(ok), -1)
    where[keep] = np.arange(len(keep))
    if len(vn):
        pool = np.concatenate([base_old, base_new])[keep]
        rows[vn] = augment_rows(base_new[vn], pool, fit, self_rows=where[len(ok_old) + vn])
    return rows, raw_new.astype(np.float16), fit


def open_stored(path: Path, annotations, **columns):
    """A stored file's contents (:func:`read_stored`), its model (:func:`check_model`) and the
    new annotations (``columns``: image_root and the column names of load_annotations)."""
    stored = read_stored(path)
    spec = check_model(path, stored)
    return stored, spec, load_annotations(annotations, **columns)


def check_model(target: Path, old: dict):
    """The model that made ``target``, or AppendError when this installation lacks it (or has
    another version of it)."""
    attrs = old["attrs"]
    try:
        spec = get_model(attrs["model"]) if attrs.get("model") else None
    except Exception:  # noqa: BLE001 - an unknown model name or file: said below
        spec = None
    if spec is None or spec.sha256 != attrs.get("model_sha256"):
        raise AppendError(f"{target} was made by model {attrs.get('model')!r} "
                          f"({str(attrs.get('model_sha256', ''))[:12]}...), which this dupscope "
                          "does not have in that version: run the whole set again")
    if attrs.get("preprocess") != PREPROCESS:
        raise AppendError(f"{target} was made by a dupscope that prepared images for the model "
                          f"differently (preprocess {attrs.get('preprocess', 'before frame trimming')!r}, "
                          f"this one {PREPROCESS!r}): run the whole set again")
    return spec


def embed_new(table, spec, verify: bool, *, device, batch_size, workers, threads, progress, console):
    """Embed the images of ``table`` as a full run would (raw output, layout when verifying);
    returns the result and the seconds it took."""
    from .pipeline import _progress_bars

    t0 = time.perf_counter()
    dtype = "float16" if spec.fusion is not None else "float32"
    with (_progress_bars(console) if progress else nullcontext(None)) as bar:
        task = bar.add_task("embedding", total=len(table), unit="img") if bar else None
        result = embed_images(table.resolved, spec, batch_size=batch_size, workers=workers, device=device,
                              threads=threads, dtype=dtype, layout=verify,
                              progress=(lambda done: bar.update(task, completed=done)) if bar else None)
    if not result.ok.any():
        raise PipelineError(f"none of the {len(table)} new images could be read (e.g. {table.resolved[0]}: "
                            f"{result.errors[0]}); check the paths and --image-root")
    return result, time.perf_counter() - t0


def _combine_and_write(target: Path, lock, old: dict, table, result, spec, verify: bool, *, console) -> dict:
    from .scoring import VerifiedPairs, candidate_bar, layout_pairs, layout_valid, score_neighbors, second_chance_bar

    n0, m, k = old["n"], len(table), old["k"]
    ok_old, ok_new = old["ok"], result.ok
    ok = np.concatenate([ok_old, ok_new])
    new_rows, raw_new, fit = fused_new_rows(target, old, result, spec)
    raw_union = None if raw_new is None else np.concatenate([old["raw"], raw_new])  # both float16
    emb_union = np.concatenate([old["embeddings"], new_rows.astype(np.float16).astype(np.float32)])
    if raw_union is None:
        raw_union = emb_union
    # The engine's lists of the union.
    e_index, e_sim = _union_lists(*old["engine"], new_rows, emb_union, old["embeddings"], k,
                                  valid_new=ok_new, valid_all=ok, valid_old=ok_old)
    n_checked = 0
    scored = None
    layout = lists = None
    if verify:
        lay_old = old["layout/descriptor"].astype(np.float32)
        lay_new = np.asarray(result.layout, np.float32)
        layout = np.concatenate([lay_old, lay_new])
        lv = layout_valid(layout, ok)
        near = old["layout/index"].shape[1]
        lists = _union_lists(old["layout/index"], old["layout/similarity"], lay_new, layout, lay_old, near,
                             valid_new=lv[n0:], valid_all=lv, valid_old=lv[:n0])
        known = None
        if old["attrs"].get("verifier") == verifier_id():
            known = VerifiedPairs(old["verified/a"], old["verified/b"], old["verified/inliers"],
                                  old["verified/coverage"], old["verified/mirrored"])
        else:  # evidence of another verifier would not compare with this one's
            console.print(f"{target}'s pairs were checked with other verification settings "
                          f"({old['attrs'].get('verifier', 'before they were recorded')}): checking them again",
                          markup=False, highlight=False)
        bar_value, rank = candidate_bar(spec.family)
        columns = spec.fusion.branches[0].dim if spec.fusion is not None else None
        resolved = list(old["resolved"]) + list(table.resolved)
        console.print("verifying the new candidate pairs", markup=False, highlight=False)
        scored = score_neighbors(e_index, e_sim, raw_union, resolved, bar=bar_value, rank=rank, columns=columns,
                                 extra=layout_pairs(*lists), embeddings=emb_union, known=known, layout=layout,
                                 second_bar=second_chance_bar(spec.family))
        n_checked = scored.n_checked
    # Write the union beside the old file and rename it over it when complete.
    attrs = dict(old["attrs"])
    with SimilarityWriter(target, overwrite=True, lock=lock) as w:
        w.write_images(paths=list(old["paths"]) + list(table.paths), resolved=list(old["resolved"]) + list(table.resolved),
                       labels=list(old["labels"]) + list(table.labels), splits=list(old["splits"]) + list(table.splits),
                       ok=ok, errors=list(old["errors"]) + list(result.errors),
                       widths=np.concatenate([old["widths"], result.widths]),
                       heights=np.concatenate([old["heights"], result.heights]))
        w.write_embeddings(emb_union)
        if fit is not None:
            w.write_embeddings(raw_union, "embeddings_raw")
            fit.to_group(w.h5.create_group("fusion"))
        if old["dense"]:
            _write_dense(w, target, emb_union, ok, n0, attrs)
        if verify:
            w.write_array("engine/index", e_index)
            w.write_array("engine/similarity", e_sim)
            w.write_array("layout/descriptor", layout.astype(np.float16))
            w.write_array("layout/index", lists[0])
            w.write_array("layout/similarity", lists[1])
            w.write_scores(scored)
        else:
            w.write_array("neighbors/index", e_index)
            w.write_array("neighbors/similarity", e_sim)
        carry_attrs(w, attrs)
        if verify:
            w.attrs["verifier"] = verifier_id()
        w.attrs["n_images"] = n0 + m
        w.attrs["appended"] = int(attrs.get("appended", 0)) + 1
        w.attrs["annotations"] = f"{attrs.get('annotations', '')}; + {printable(table.source)}"
    return {"pairs_verified": n_checked}


def _write_dense(w, target: Path, emb: np.ndarray, ok: np.ndarray, n0: int, attrs: dict) -> None:
    """The union's dense matrix: the old one copied, the new rows and columns computed from the
    embeddings (``(1 + cos) / 2``, float16; 1 on the diagonal, NaN for failed images)."""
    import h5py

    from .search import unit_rows

    n, t = len(emb), int(attrs.get("tile", 256)) or 256
    d = w.h5.create_dataset("similarity", shape=(n, n), dtype=np.float16, chunks=(min(t, n), min(t, n)),
                            fillvalue=np.float16(np.nan))
    u = unit_rows(emb)
    bad = ~ok
    with h5py.File(target, "r") as h5:
        src = h5["similarity"]
        for r in range(0, n0, t):
            d[r:min(r + t, n0), :n0] = src[r:min(r + t, n0), :]
    for r in range(n0, n, t):
        block = ((1.0 + np.clip(u[r:r + t] @ u.T, -1, 1)) / 2).astype(np.float16)
        block[:, bad] = np.nan
        block[bad[r:r + t]] = np.nan
        rows = np.arange(r, min(r + t, n))
        block[rows - r, rows] = np.where(ok[rows], 1.0, np.nan)
        d[r:r + t, :] = block
        d[:n0, r:r + t] = block[:, :n0].T
