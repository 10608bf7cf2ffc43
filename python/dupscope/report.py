"""`dupscope report`: a terminal summary of a similarity file (and the same as a dict for JSON).

Pairs come from the neighbour lists (each pair once, i < j), so counts at a threshold are exact
as long as no image has more than k neighbours above it; the report says when that may not hold.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .pairs import connected_groups, group_sizes, neighbor_pairs

__all__ = ["summarize", "print_report", "connected_groups", "group_sizes"]
from .store import SimilarityFile, printable
from .threshold import suggest_threshold

DEFAULT_THRESHOLDS = (0.99, 0.97, 0.95, 0.90, 0.85)


def summarize(path: "os.PathLike[str] | str", thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
              threshold: Optional[float] = None, top: int = 10) -> Dict[str, Any]:
    """Everything `dupscope report` shows, as plain Python data.

    Parameters
    ----------
    path : path-like
        A finished dupscope HDF5 file.
    thresholds : sequence of float
        Thresholds at which pairs and groups are counted.
    threshold : float, optional
        The threshold for the cross-split and label-conflict lists; by default the suggested one
        (``dupscope.threshold.suggest_threshold``), else 0.95.
    top : int
        How many of the most similar pairs and of each list to include.
    """
    with SimilarityFile(path) as f:
        n = f.n
        paths, labels, splits = [printable(p) for p in f.paths], f.labels, f.splits
        ok, errors = f.ok, f.errors
        idx, sim = f.neighbors()
        attrs = f.attrs
        sets = f.sets
    k = idx.shape[1]
    a, b, s = neighbor_pairs(idx, sim)
    s32 = s.astype(np.float32)

    nn = sim[:, 0].astype(np.float32) if k else np.zeros(0, np.float32)
    sg = suggest_threshold(nn)  # ignores NaN; method "none" when no image has a neighbour
    suggestion = None if sg.method == "none" else {"threshold": float(sg.threshold),
                                                   "reasoning": str(sg.reasoning)}
    chosen = threshold if threshold is not None else (
        suggestion["threshold"] if suggestion else 0.95)

    counts = []
    for t in sorted(set(list(thresholds) + [chosen]), reverse=True):
        sel = s32 >= t
        sizes = group_sizes(n, a[sel], b[sel])
        # If some image's k-th neighbour is still above t, it may have more we did not keep.
        saturated = int(np.sum(sim[:, -1].astype(np.float32) >= t)) if k else 0
        counts.append({"threshold": float(t), "pairs": int(sel.sum()), "groups": int(sizes.size),
                       "images_in_groups": int(sizes.sum()), "rows_at_k_limit": saturated})

    def pair(i: int, j: int, v: float) -> Dict[str, Any]:
        return {"a": int(i), "b": int(j), "similarity": round(float(v), 4),
                "path_a": paths[i], "path_b": paths[j], "label_a": labels[i], "label_b": labels[j],
                "split_a": splits[i], "split_b": splits[j]}

    sel = s32 >= chosen
    sa, sb, ss = a[sel], b[sel], s32[sel]
    split_arr = np.array(splits, dtype=object)
    label_arr = np.array(labels, dtype=object)
    cross = (split_arr[sa] != split_arr[sb]) & (split_arr[sa] != "") & (split_arr[sb] != "")
    conflict = (label_arr[sa] != label_arr[sb]) & (label_arr[sa] != "") & (label_arr[sb] != "")
    failed = [{"index": int(i), "path": paths[i], "error": errors[i]}
              for i in np.flatnonzero(~ok)]
    reference = None
    if sets is not None:  # a reference run: query-reference duplicates, the leak check, first
        is_ref = np.array([v == "reference" for v in sets])
        qr = is_ref[sa] != is_ref[sb]
        # each pair as (query, reference)
        qa, qb = np.where(is_ref[sa[qr]], sb[qr], sa[qr]), np.where(is_ref[sa[qr]], sa[qr], sb[qr])
        reference = {"file": str(attrs.get("reference", "")), "count": int(qr.sum()),
                     "queries": int(len(np.unique(qa))), "n_query": int((~is_ref).sum()),
                     "pairs": [pair(i, j, v) for i, j, v in zip(qa[:top], qb[:top], ss[qr][:top])]}
    return {
        "file": str(path),
        "n_images": n,
        "k": k,
        "model": attrs.get("model", ""),
        "created": attrs.get("created", ""),
        "dense": bool(attrs.get("dense", False)),
        "failed": failed,
        "nearest_neighbor_similarity": {
            q: round(float(np.nanpercentile(nn, p)), 4) if np.isfinite(nn).any() else None
            for q, p in (("min", 0), ("p25", 25), ("median", 50), ("p75", 75), ("max", 100))
        },
        "suggested_threshold": suggestion,
        "threshold": float(chosen),
        "counts": counts,
        "most_similar": [pair(i, j, v) for i, j, v in zip(a[:top], b[:top], s32[:top])],
        # The informative pairs: those whose score is closest to the threshold, on either side.
        "near_threshold": [pair(a[p], b[p], s32[p]) for p in
                           sorted(np.argsort(np.abs(s32 - chosen), kind="stable")[:top].tolist(),
                                  key=lambda p: -s32[p])],
        "verified": attrs.get("score", "") == "verified",
        "reference": reference,
        "cross_split": {"count": int(cross.sum()),
                        "pairs": [pair(i, j, v) for i, j, v in
                                  zip(sa[cross][:top], sb[cross][:top], ss[cross][:top])]},
        "label_conflicts": {"count": int(conflict.sum()),
                            "pairs": [pair(i, j, v) for i, j, v in
                                      zip(sa[conflict][:top], sb[conflict][:top],
                                          ss[conflict][:top])]},
    }


def print_report(summary: Dict[str, Any], console=None) -> None:
    """Render :func:`summarize`'s result with rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = summary
    console.print(f"[bold]{s['file']}[/bold]: {s['n_images']} images, k = {s['k']}, "
                  f"model {s['model'] or '?'}, {'dense matrix' if s['dense'] else 'neighbours only'}")
    nn = s["nearest_neighbor_similarity"]
    if nn["median"] is not None:
        console.print("nearest-neighbour similarity: " + ", ".join(f"{k} {v}" for k, v in nn.items()))
    if s["suggested_threshold"]:
        console.print(f"suggested threshold [bold]{s['suggested_threshold']['threshold']:.3f}[/bold]: "
                      f"{s['suggested_threshold']['reasoning']}")

    def pair_table(title: str, pairs: List[Dict[str, Any]]) -> None:
        if not pairs:
            return
        pt = Table(title=title)
        for col in ("similarity", "image", "duplicate", "labels", "splits"):
            pt.add_column(col, overflow="fold")
        for p in pairs:
            pt.add_row(f"{p['similarity']:.4f}", p["path_a"], p["path_b"],
                       f"{p['label_a']} / {p['label_b']}", f"{p['split_a']} / {p['split_b']}")
        console.print(pt)

    ref = s.get("reference")
    if ref:
        console.print(f"[bold]{ref['queries']}[/bold] of {ref['n_query']} query images have a duplicate in the "
                      f"reference {ref['file']} at threshold {s['threshold']:.3f} ({ref['count']} pairs)")
        pair_table("Query images duplicated in the reference (possible leaks)", ref["pairs"])

    t = Table(title="Duplicates by threshold")
    for col in ("threshold", "pairs", "groups", "images in groups"):
        t.add_column(col, justify="right")
    for c in s["counts"]:
        mark = " *" if abs(c["threshold"] - s["threshold"]) < 1e-9 else ""
        t.add_row(f"{c['threshold']:.3f}{mark}", str(c["pairs"]), str(c["groups"]),
                  str(c["images_in_groups"]))
    console.print(t)
    limited = [c for c in s["counts"] if c["rows_at_k_limit"]]
    if limited:
        console.print(f"[yellow]note:[/yellow] at {limited[-1]['threshold']:.3f}, "
                      f"{limited[-1]['rows_at_k_limit']} images have all {s['k']} kept neighbours "
                      "above the threshold, so counts there are lower bounds (use a larger --k)")

    pair_table("Most similar pairs", s["most_similar"])
    pair_table(f"Pairs nearest the threshold {s['threshold']:.3f} (the ones worth a look)", s["near_threshold"])
    th = s["threshold"]
    console.print(f"At threshold {th:.3f}: [bold]{s['cross_split']['count']}[/bold] duplicate pairs "
                  f"cross splits, [bold]{s['label_conflicts']['count']}[/bold] have different labels")
    pair_table("Duplicates across splits (possible leaks)", s["cross_split"]["pairs"])
    pair_table("Duplicates with different labels", s["label_conflicts"]["pairs"])
    if s["failed"]:
        ft = Table(title=f"{len(s['failed'])} images failed")
        ft.add_column("index", justify="right")
        ft.add_column("path", overflow="fold")
        ft.add_column("error", overflow="fold")
        for f in s["failed"][:20]:
            ft.add_row(str(f["index"]), f["path"], f["error"])
        console.print(ft)
    else:
        console.print("No image failed to load.")
