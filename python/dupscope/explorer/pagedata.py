"""Turn a similarity HDF5 file into the compact data the explorer page reads (``data.js``).

The page never sees the N x N matrix, and it does not group images itself: it gets the file's
complete-linkage merge list (:func:`dupscope.export.merge_list`), which it replays up to the
threshold on each slider step (linear in the images), the pairs inside the hierarchy's groups
(the only pairs a row or the compare view can show), each image's nearest neighbour, and how many
pairs score at least each value. All the de-duplicated neighbour pairs go to ``data/pairs.*.js``
part files that the page loads only when asked to export them. Numeric arrays travel as base64
of little-endian typed arrays, which the page turns into typed arrays without parsing millions of
JSON numbers; similarities stay float16 (their bit patterns) as stored in the file.
"""

from __future__ import annotations

import base64
import json
import re
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import IncompleteFileError
from ..pairs import descending_order, entry_pair_keys, neighbor_pairs
from ..scoring import VERIFIED_INLIERS

__all__ = [
    "IncompleteFileError",
    "PageData",
    "neighbor_pairs",
    "order_by_max_similarity",
    "read_page_data",
    "page_data_json",
]

#: Version of the ``window.DUPSCOPE_DATA`` layout; the page checks it.
PAGE_DATA_VERSION = 3

#: Elements per part file: a column longer than this is written as several ``data/*.js`` files
#: (4M int32 values are 22 MB of base64), so no single script comes near the browser's longest
#: string (V8: about 512 MB), and the page frees each part once decoded.
PART_ELEMENTS = 1 << 22


@dataclass
class PageData:
    """Everything the page needs, read from a similarity file.

    Attributes
    ----------
    paths, resolved_paths, labels, splits, errors
        Per-image strings from ``images/*``.
    ok
        (N,) bool, whether the image decoded.
    pair_a, pair_b
        (P,) int32 image indices of each duplicate candidate pair, ``pair_a < pair_b``.
    pair_sim
        (P,) float16 similarities, sorted in descending order.
    max_sim
        (N,) float16 highest similarity of each image to another, NaN when it has no neighbour.
    order
        (N,) int32 images from the highest ``max_sim`` to the lowest (ties by lower index, images
        without neighbours last).
    attrs
        Root attributes of the file worth showing (model, metric, ...).
    merges
        The complete-linkage merge list of the pairs (:class:`dupscope.export.MergeList`).
    in_group, in_group_inliers
        (P,) bool: the pairs inside the groups of the whole hierarchy (every merge made), the only
        pairs a row or the compare view can show; and their geometric inliers, int16 (``-1``: not
        checked), or None when the file was written without verification.
    sets
        (N,) uint8 1 for a query image, 2 for a reference image (a reference run's file), or None.
    nn, nn_inliers
        (N,) int32 each image's nearest neighbour (-1: none) and (N,) int16 that pair's inliers
        (None without verification).
    width, height
        (N,) int32 image sizes (0 when unknown), for the delete list's keeper.
    has_paths
        Whether the file names its images (else ``paths`` are "image 0", "image 1", ...).
    """

    paths: list[str]
    resolved_paths: list[str]
    labels: list[str]
    splits: list[str]
    errors: list[str]
    ok: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_sim: np.ndarray
    max_sim: np.ndarray
    order: np.ndarray
    k: int
    attrs: dict[str, Any] = field(default_factory=dict)
    width: np.ndarray | None = None
    height: np.ndarray | None = None
    has_paths: bool = True
    merges: Any = None
    in_group: np.ndarray | None = None
    in_group_inliers: np.ndarray | None = None
    sets: np.ndarray | None = None
    nn: np.ndarray | None = None
    nn_inliers: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of images."""
        return len(self.paths)


def order_by_max_similarity(max_sim: np.ndarray) -> np.ndarray:
    """Images from highest to lowest ``max_sim``, ties by lower index, NaN last (int32)."""
    return descending_order(max_sim).astype(np.int32)


def _strings(ds: Any) -> list[str]:
    return [str(x) for x in ds.asstr()[()]]


def read_page_data(h5_path: str | os.PathLike[str]) -> PageData:
    """Read what the page needs from a similarity file (schema version 1, see ``docs/SCHEMA.md``).

    Parameters
    ----------
    h5_path
        The similarity HDF5 file.

    Returns
    -------
    PageData

    Raises
    ------
    dupscope.errors.IncompleteFileError
        The root attribute ``complete`` is not True (the run that wrote it did not finish).
    dupscope.errors.SimilarityFileError
        Not an HDF5 file, or a dataset the page needs is missing or of the wrong kind; the
        message names the file and dataset.
    """
    from ..store import SimilarityFile

    with SimilarityFile(h5_path) as f:
        index, sim = f.neighbors()
        # A file from write_similarity without paths: rows are shown as "image i".
        paths = f.paths if f.has_paths else [f"image {i}" for i in range(f.n)]
        n = len(paths)
        resolved = f.resolved_paths if f.has_paths else paths
        labels, splits, errors = f.labels, f.splits, f.errors
        ok = f.ok
        inliers = f.inliers()
        width, height = f.widths, f.heights
        file_attrs = f.attrs
        has_paths = f.has_paths
        sets = f.sets
    attrs = {key: file_attrs[key] for key in ("schema_version", "dupscope_version", "created", "n_images", "k",
                                              "dense", "metric", "device", "model", "annotations", "image_root",
                                              "score") if key in file_attrs}
    from ..export import groups_at, merge_list

    a, b, s = neighbor_pairs(index, sim)
    merges = merge_list(n, a, b, s)
    label = groups_at(n, merges, -np.inf) if len(merges) else np.full(n, -1)
    in_group = (label[a] >= 0) & (label[a] == label[b])
    nn = index[:, 0].astype(np.int32) if index.shape[1] else np.full(n, -1, np.int32)
    nn_a, nn_b = np.minimum(np.arange(n), nn), np.maximum(np.arange(n), nn)
    in_group_inliers = nn_inliers = None
    if inliers is not None:  # one look-up for the pairs in groups and the nearest-neighbour pairs
        found = _pair_values(index, inliers, np.r_[a[in_group], nn_a], np.r_[b[in_group], nn_b])
        in_group_inliers, nn_inliers = found[:int(in_group.sum())], np.where(nn >= 0, found[int(in_group.sum()):], -1)
    max_sim = np.full(n, np.nan, dtype=np.float16)
    if index.shape[1]:
        # Lists are sorted most similar first, so column 0 is each image's highest similarity;
        # a pair that only the other image lists is never higher than this image's own top-1.
        has = index[:, 0] >= 0
        max_sim[has] = sim[has, 0]
    return PageData(
        paths=paths,
        resolved_paths=resolved,
        labels=labels,
        splits=splits,
        errors=errors,
        ok=ok,
        pair_a=a,
        pair_b=b,
        pair_sim=s,
        max_sim=max_sim,
        order=order_by_max_similarity(max_sim),
        k=int(index.shape[1]),
        attrs={k: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in attrs.items()},
        width=width,
        height=height,
        has_paths=has_paths,
        merges=merges,
        in_group=in_group,
        in_group_inliers=in_group_inliers,
        sets=None if sets is None else np.array([1 if v == "query" else 2 for v in sets], np.uint8),
        nn=nn,
        nn_inliers=None if nn_inliers is None else nn_inliers.astype(np.int16),
    )


def _pair_values(index: np.ndarray, values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each pair ``(a[p], b[p])``, the entry of ``values`` (N, k) where one image lists the
    other (the larger, if both do)."""
    n = index.shape[0]
    ok = index >= 0
    keys = entry_pair_keys(index)[ok]
    vals = values[ok].astype(np.int32)
    order = np.lexsort((vals, keys))  # by key, the largest value last
    keys, vals = keys[order], vals[order]
    last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.zeros(0, bool)
    keys, vals = keys[last], vals[last]
    want = a.astype(np.int64) * n + b.astype(np.int64)
    pos = np.clip(np.searchsorted(keys, want), 0, max(len(keys) - 1, 0))
    if not len(keys):
        return np.full(len(want), -1, np.int16)
    return np.where(keys[pos] == want, vals[pos], -1).astype(np.int16)


def group_links(data: PageData) -> dict[str, np.ndarray]:
    """The pairs inside the groups of the whole hierarchy (:attr:`PageData.in_group`) as per-image
    lists (CSR: ``start`` (N + 1), ``idx``, ``bits`` (float16 bits), ``inliers``), each list from
    the highest score down. Groups at any threshold, marks or not, lie inside these groups."""
    n = data.n
    a, b = data.pair_a[data.in_group], data.pair_b[data.in_group]
    bits = data.pair_sim[data.in_group].astype(np.float16).view(np.uint16)
    inl = data.in_group_inliers if data.in_group_inliers is not None else np.full(len(a), -1, np.int16)
    src, dst = np.concatenate([a, b]), np.concatenate([b, a])
    bits2, inl2 = np.concatenate([bits, bits]), np.concatenate([inl, inl])
    order = np.lexsort((dst, (0xFFFF - bits2.astype(np.int64)), src))  # by image, score high first, then row
    start = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(src, minlength=n), out=start[1:])
    return {"start": start, "idx": dst[order].astype(np.int32), "bits": bits2[order], "inliers": inl2[order]}


def pair_levels(pair_sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pair scores as float16 bits from the highest down, and how many pairs score at
    least each (the page's pair count at a threshold)."""
    bits = np.asarray(pair_sim, np.float16).view(np.uint16)
    values, counts = np.unique(bits, return_counts=True)
    values, counts = values[::-1], counts[::-1]
    return values, np.cumsum(counts).astype(np.int32)


def _column(arr: np.ndarray, dtype: str, name: str, parts: dict[str, str] | None, lazy: bool = False) -> Any:
    """A typed column: base64 inline when short (or without ``parts``), else
    ``{"parts": [keys], "length": n}`` with each key's base64 slice put into ``parts``; with
    ``lazy``, always in parts (loaded by the page only when needed)."""
    a = np.ascontiguousarray(arr, dtype=dtype)
    if parts is None or (a.size <= PART_ELEMENTS and not lazy):
        return _b64(a, dtype)
    keys = []
    for k, start in enumerate(range(0, max(a.size, 1), PART_ELEMENTS)):
        key = f"{name}.{k}"
        parts[key] = _b64(a[start:start + PART_ELEMENTS], dtype)
        keys.append(key)
    return {"parts": keys, "length": int(a.size)}


def part_script(key: str, b64: str) -> str:
    """The text of one ``data/<key>.js`` file."""
    return f"(window.DUPSCOPE_PARTS = window.DUPSCOPE_PARTS || {{}})[{json.dumps(key)}] = \"{b64}\";\n"


def _b64(arr: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=dtype).tobytes()).decode("ascii")


def _codes(values: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct values (``""`` first) and each value's code, so the page stores small ints."""
    names = [""] + sorted({v for v in values if v})
    lookup = {name: i for i, name in enumerate(names)}
    return names, np.fromiter((lookup[v] for v in values), dtype=np.int32, count=len(values))


def _suggestion(max_sim: np.ndarray) -> dict[str, Any] | None:
    """The threshold suggested from the nearest-neighbour similarities, for the histogram."""
    from ..threshold import suggest_threshold

    finite = np.asarray(max_sim, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return None
    sg = suggest_threshold(finite)
    return {"t": round(float(sg.threshold), 3), "why": sg.reasoning, "method": sg.method}


def originals(resolved: list[str], target: str | os.PathLike[str], has_paths: bool = True
              ) -> tuple[str | None, list[str], np.ndarray]:
    """Where the page finds the original images: their common folder (the data set root), each
    image's path under it (``/``-separated, for URLs), and each file's size in bytes (-1 when it
    cannot be read now). ``(None, [], sizes)`` when the images have no usable paths."""
    from ..shards import is_member_address

    n = len(resolved)
    sizes = np.full(n, -1, np.float64)
    if not has_paths or not n or any(is_member_address(p) for p in resolved):
        # Members of tar shards have no file of their own to show: the compare view shows thumbnails.
        return None, [], sizes
    absolute = [os.path.abspath(p) for p in resolved]
    for i, p in enumerate(absolute):
        try:
            sizes[i] = os.stat(p).st_size
        except (OSError, ValueError):
            pass
    try:
        root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    except ValueError:  # different drives
        return None, [], sizes
    rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in absolute]
    return root, rel, sizes


def page_data_json(
    data: PageData,
    *,
    has_thumb: np.ndarray,
    thumb_ext: str,
    thumb_size: int,
    predictions: Any = None,
    source: str = "",
    identity: str = "",
    original_root: str | None = None,
    original_rel: list[str] | None = None,
    sizes: np.ndarray | None = None,
    target: str | os.PathLike[str] | None = None,
    parts: dict[str, str] | None = None,
) -> str:
    """The JSON object assigned to ``window.DUPSCOPE_DATA``, safe to put inside a script tag.

    Every ``<`` is written as ``\\u003c`` (only strings can contain it in JSON), so no file name
    can close the script element or open a comment; JSON encoding keeps names from being code.

    With ``parts`` (a dict to fill), columns longer than :data:`PART_ELEMENTS` are split into
    parts, written by the caller as ``data/<key>.js`` (:func:`part_script`) and listed in the
    object's ``files``, which the page loads before it starts; the pair columns always go to parts,
    listed in ``pairs.files``, which the page loads only for a pair export. Without ``parts``
    everything is inline.
    """
    label_names, label_code = _codes(data.labels)
    links = group_links(data)
    levels, at_least = pair_levels(data.pair_sim)
    lazy_parts: dict[str, str] | None = {} if parts is not None else None
    split_names, split_code = _codes(data.splits)
    flags = data.ok.astype(np.uint8) | (np.asarray(has_thumb, dtype=np.uint8) << 1)
    obj: dict[str, Any] = {
        "version": PAGE_DATA_VERSION,
        "n": data.n,
        "k": data.k,
        "source": source,
        "attrs": data.attrs,
        "thumbs": {"dir": "thumbs", "ext": thumb_ext, "size": thumb_size, "shard": 1000},
        "paths": data.paths,
        "labelNames": label_names,
        "label": _b64(label_code, "<i4"),
        "splitNames": split_names,
        "split": _b64(split_code, "<i4"),
        "flags": _b64(flags, "u1"),
        "errors": {str(i): data.errors[i] for i in np.flatnonzero(~data.ok)},
        "maxSim": _b64(data.max_sim.view(np.uint16), "<u2"),
        "order": _b64(data.order, "<i4"),
        "merges": {
            "count": len(data.merges),
            "u": _column(data.merges.u, "<i4", "merges.u", parts),
            "v": _column(data.merges.v, "<i4", "merges.v", parts),
            "level": _column(data.merges.level.astype(np.float16).view(np.uint16), "<u2", "merges.level", parts),
        },
        "links": {
            "start": _column(links["start"], "<i4", "links.start", parts),
            "idx": _column(links["idx"], "<i4", "links.idx", parts),
            "bits": _column(links["bits"], "<u2", "links.bits", parts),
            "inliers": None if data.in_group_inliers is None else _column(links["inliers"], "<i2", "links.inliers", parts),
        },
        "nn": _b64(np.full(data.n, -1, np.int32) if data.nn is None else data.nn, "<i4"),
        # A reference run: 1 query, 2 reference; groups holding both are shown first.
        "sets": None if data.sets is None else _b64(data.sets, "u1"),
        "nnInliers": None if data.nn_inliers is None else _b64(data.nn_inliers, "<i2"),
        "pairLevels": {"bits": _b64(levels, "<u2"), "atLeast": _b64(at_least, "<i4")},
        # Every pair, for the page's pair exports only: part files loaded on demand.
        "pairs": {
            "count": int(data.pair_a.size),
            "a": _column(data.pair_a, "<i4", "pairs.a", lazy_parts, lazy=True),
            "b": _column(data.pair_b, "<i4", "pairs.b", lazy_parts, lazy=True),
            "s": _column(data.pair_sim.astype(np.float16).view(np.uint16), "<u2", "pairs.s", lazy_parts, lazy=True),
        },
        "width": _b64(np.zeros(data.n, np.int32) if data.width is None else data.width, "<i4"),
        "height": _b64(np.zeros(data.n, np.int32) if data.height is None else data.height, "<i4"),
        "verifiedInliers": VERIFIED_INLIERS,
        "identity": identity,
        "bytes": _b64(np.full(data.n, -1.0) if sizes is None else sizes, "<f8"),
        # Originals for the compare view: from disk by a path relative to the explorer folder,
        # through `dupscope serve` under /_originals/ (the server serves that root only).
        "originals": None if original_root is None or not original_rel else {
            "fromSite": os.path.relpath(original_root, os.path.abspath(target or ".")).replace(os.sep, "/"),
            "root": original_root,
            # The paths under the root are often the listed paths themselves: then not repeated.
            "rel": "paths" if original_rel == data.paths else original_rel,
        },
        "pred": None,
        "suggested": _suggestion(data.max_sim),
    }
    obj["files"] = [f"data/{key}.js" for key in (parts or {})]
    if lazy_parts:
        obj["pairs"]["files"] = [f"data/{key}.js" for key in lazy_parts]
        parts.update(lazy_parts)
    if predictions is not None:
        pred: dict[str, Any] = {
            "kind": "score" if predictions.top_class is None else "class",
            "score": _b64(predictions.score, "<f4"),
        }
        if predictions.top_class is not None:
            pred["cls"] = _b64(predictions.top_class, "<i4")
            pred["classNames"] = list(predictions.class_names or [])
        obj["pred"] = pred
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # U+2028/2029 are valid in JSON and (since ES2019) in JS strings, escaped anyway for old parsers.
    text = text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    # A name that was not valid UTF-8 holds surrogate escapes (docs/SCHEMA.md): written as JSON
    # escapes, the file stays valid UTF-8 (the page shows a replacement character there).
    return _SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), text)


_SURROGATE = re.compile("[\ud800-\udfff]")
