"""Checking a new set of images against an existing one: the train/test leak check.

``dupscope similarity QUERY --reference ref.h5 -o query.h5`` (:func:`reference_similarity`)
finds, for each query image, its neighbours among the reference images and the other query
images, with the reference's model and fit, and verifies the candidate pairs as a full run would.
The reference file is only read.

The output is a similarity file of its own (docs/SCHEMA.md) whose rows are the query images, in
annotation order, followed by the reference images that are a neighbour of a query image or have
one among their neighbours (``images/set`` says which is which, ``images/reference_row`` gives a
reference image's row in the reference file). A reference row's list holds only its pairs with
query images; the reference's own pairs stay in the reference file. ``dupscope report`` and the
explorer put the groups that hold both a query and a reference image first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .append import _union_lists, carry_attrs, embed_new, fused_new_rows, open_stored
from .device import parse_device, require_gpu
from .errors import AppendError
from .store import OutputLock, SimilarityWriter, check_output, printable

__all__ = ["reference_similarity"]


def _remap(index: np.ndarray, local: np.ndarray) -> np.ndarray:
    return np.where(index >= 0, local[np.maximum(index, 0)], -1).astype(np.int32)


def reference_similarity(annotations: str | os.PathLike, reference: str | os.PathLike, output: str | os.PathLike, *,
                         image_root=None, device: str = "auto", batch_size: int | None = None,
                         workers: int | None = None, threads: int | None = None, path_column: str | None = None,
                         label_column: str | None = None, split_column: str | None = None, progress: bool = True,
                         overwrite: bool = True) -> dict[str, Any]:
    """Compare the images of ``annotations`` with the reference file's (see the module docstring).

    Returns
    -------
    dict
        ``n_query``, ``n_reference`` (images in the reference file), ``n_reference_shown``,
        ``query_reference_pairs`` (verified pairs scoring >= 0.5 between a query and a reference
        image), ``pairs_verified``, ``embed_seconds``, ``seconds``, ``output``.

    Raises
    ------
    AppendError
        The reference file cannot be used (schema 1, another model), or the output is the
        reference file.
    """
    from rich.console import Console

    from .scoring import candidate_bar, layout_pairs, layout_valid, score_neighbors

    t_start = time.perf_counter()
    console = Console(stderr=True, quiet=not progress)
    device = parse_device(device)
    require_gpu(device)
    reference = Path(reference)
    if not reference.is_file():
        raise AppendError(f"cannot compare against {reference}: no such file")
    output = check_output(output, overwrite=overwrite)
    if output.exists() and os.path.samefile(output, reference) or \
            os.path.abspath(output) == os.path.abspath(reference):
        raise AppendError(f"the output {output} is the reference file, which is only read: choose another output")
    with OutputLock(output) as lock:
        ref, spec, table = open_stored(reference, annotations, image_root=image_root, path_column=path_column,
                                       label_column=label_column, split_column=split_column)
        verify, n0, m, k = ref["verified"], ref["n"], len(table), ref["k"]
        console.print(f"checking [bold]{m}[/bold] images from {table.source} against {reference} ({n0} images, "
                      f"model {spec.name})")
        result, embed_seconds = embed_new(table, spec, verify, device=device, batch_size=batch_size,
                                          workers=workers, threads=threads, progress=progress, console=console)
        rows, raw_new, fit = fused_new_rows(reference, ref, result, spec)
        ok = np.concatenate([ref["ok"], result.ok])
        emb = np.concatenate([ref["embeddings"], rows.astype(np.float16).astype(np.float32)])
        ids = n0 + np.arange(m)
        # The lists of the union, as an append makes them; reference rows keep their query entries only.
        ui, us = _union_lists(*ref["engine"], rows, emb, ref["embeddings"], k,
                              valid_new=result.ok, valid_all=ok, valid_old=ref["ok"])
        qi, qs, rs = ui[n0:], us[n0:], us[:n0]
        ri = np.where(ui[:n0] >= n0, ui[:n0], -1)
        lay_pairs = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        layout = None
        if verify:
            lay_ref = ref["layout/descriptor"].astype(np.float32)
            layout = np.concatenate([lay_ref, np.asarray(result.layout, np.float32)])
            lv = layout_valid(layout, ok)
            li, ls = _union_lists(ref["layout/index"], ref["layout/similarity"], layout[n0:], layout, lay_ref,
                                  ref["layout/index"].shape[1], valid_new=lv[n0:], valid_all=lv, valid_old=lv[:n0])
            li[:n0] = np.where(li[:n0] >= n0, li[:n0], -1)
            a, b = layout_pairs(li, ls)  # pairs with a query image (a reference row names only queries now)
            lay_pairs = (a, b)
            lay_lists = (li[n0:], ls[n0:], li[:n0], ls[:n0])
        # The rows written: the queries, then every reference image paired with one.
        touched = np.zeros(n0, bool)
        for x in (qi[qi >= 0][qi[qi >= 0] < n0], lay_pairs[1][lay_pairs[1] < n0], lay_pairs[0][lay_pairs[0] < n0]):
            touched[x] = True
        touched |= (ri >= 0).any(axis=1)
        shown = np.flatnonzero(touched)
        keep = np.r_[ids, shown]
        local = np.full(n0 + m, -1, np.int64)
        local[keep] = np.arange(len(keep))
        index = np.concatenate([_remap(qi, local), _remap(ri[shown], local)])
        sim = np.concatenate([qs, np.where(ri[shown] >= 0, rs[shown], np.nan).astype(np.float16)])
        sub_ok = ok[keep]
        sub_emb = emb[keep]
        raw = np.concatenate([raw_new, ref["raw"][shown]]) if raw_new is not None else sub_emb  # rows as `keep`
        paths = [ref["resolved"][i] for i in shown]
        resolved = list(table.resolved) + paths
        scored = None
        n_checked = cross = 0
        if verify:
            bar_value, rank = candidate_bar(spec.family)
            columns = spec.fusion.branches[0].dim if spec.fusion is not None else None
            extra = (local[lay_pairs[0]], local[lay_pairs[1]])
            console.print("verifying the candidate pairs", markup=False, highlight=False)
            scored = score_neighbors(index, sim, raw, resolved, bar=bar_value, rank=rank, columns=columns,
                                     extra=extra, embeddings=sub_emb, layout=layout[keep])
            n_checked = scored.n_checked
            # Pairs in the queries' lists with a reference image (local rows m and up).
            cross = int(np.count_nonzero((scored.index[:m] >= m) & (scored.score[:m].astype(np.float32) >= 0.5)))
        set_names = ["query"] * m + ["reference"] * len(shown)
        with SimilarityWriter(output, overwrite=overwrite, lock=lock) as w:
            w.write_images(paths=list(table.paths) + [ref["paths"][i] for i in shown], resolved=resolved,
                           labels=list(table.labels) + [ref["labels"][i] for i in shown],
                           splits=list(table.splits) + [ref["splits"][i] for i in shown], ok=sub_ok,
                           errors=list(result.errors) + [ref["errors"][i] for i in shown],
                           widths=np.r_[result.widths, ref["widths"][shown]],
                           heights=np.r_[result.heights, ref["heights"][shown]])
            w.write_array("images/set", np.array([s.encode() for s in set_names], dtype=object))
            w.write_array("images/reference_row", np.r_[np.full(m, -1, np.int64), shown])
            w.write_embeddings(sub_emb)
            if fit is not None:
                w.write_embeddings(raw, "embeddings_raw")
                fit.to_group(w.h5.create_group("fusion"))
            if verify:
                w.write_array("engine/index", index)
                w.write_array("engine/similarity", sim)
                w.write_array("layout/descriptor", layout[keep].astype(np.float16))
                li, ls, lri, lrs = lay_lists
                w.write_array("layout/index", np.concatenate([_remap(li, local), _remap(lri[shown], local)]))
                w.write_array("layout/similarity", np.concatenate([ls, np.where(lri[shown] >= 0, lrs[shown], np.nan)
                                                                   ]).astype(np.float16))
                w.write_scores(scored)
            else:
                w.write_array("neighbors/index", index)
                w.write_array("neighbors/similarity", sim)
            carry_attrs(w, ref["attrs"], skip=("annotations", "annotations_sha256", "annotations_format", "appended",
                                               "image_root"))
            w.attrs.update({"n_images": len(keep), "dense": False, "k": k,
                            "annotations": printable(table.source), "annotations_format": table.format,
                            "reference": printable(str(reference.absolute())),
                            "reference_created": str(ref["attrs"].get("created", "")),
                            "reference_images": n0, "query_images": m})
    summary = {"n_query": m, "n_reference": n0, "n_reference_shown": int(len(shown)),
               "query_reference_pairs": cross, "pairs_verified": n_checked, "embed_seconds": embed_seconds,
               "seconds": time.perf_counter() - t_start, "output": str(output)}
    console.print(f"{output}: {m} query images, {len(shown)} of {n0} reference images paired with them; "
                  f"{cross} query-reference pairs score 0.5 or more; {summary['seconds']:.1f} s",
                  markup=False, highlight=False)
    return summary
