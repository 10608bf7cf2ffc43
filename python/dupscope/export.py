"""The delete list: duplicate groups that need agreement, a keeper per group, one row per image.

Connected components of the pairs above a threshold chain different pictures together: A ~ B
and B ~ C put A and C in one group even when A and C are two different pictures that each
resemble B. Groups here need agreement instead: every two members of a group are themselves a
pair at or above the threshold. They come from one complete-linkage hierarchy
(:func:`merge_list`), computed once per file:

1. Pairs are taken from the highest score down (ties: the lower row first, then the other row).
2. A pair joins its two images' groups when every image of one group is then linked to every
   image of the other by a pair already taken; otherwise it joins nothing (yet: a later pair may
   complete the link).

The groups at threshold t are the merges made at scores >= t (:func:`groups_at`), so lowering the
threshold only ever joins whole groups: a group never loses an image to another as t moves, and
the explorer's slider replays the same list.

Each group then keeps one image (:func:`choose_keepers`): the largest (width x height), ties
going to the first in annotation order; or, with ``keep="first"``, simply the first. Every
other member is marked ``remove``. Images in no group are ``keep`` with an empty group. Groups
are numbered by their first row.

``dupscope export sim.h5`` writes these rows as CSV or JSON; the explorer's export button
applies the same rule in the page at the threshold chosen there.

A person's review in the explorer is saved as *marks* (:class:`Marks`, written by the page's
"Export marks" button, read by ``dupscope export --marks marks.json``): a merge that would put the
two images of a pair marked "not a duplicate" into one group is not made (at any threshold), and
an image marked "keep this one" is its group's keeper.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError
from .pairs import neighbor_pairs

__all__ = ["ExportError", "DeleteList", "Marks", "MergeList", "merge_list", "groups_at", "duplicate_groups",
           "choose_keepers", "delete_list",
           "write_delete_list", "read_marks", "file_identity", "KEEP_RULES"]

KEEP_RULES = ("largest", "first")


#: ``dupscope_marks`` version of the marks file the explorer writes.
MARKS_VERSION = 1


def file_identity(attrs: dict, n: int, name: str) -> str:
    """What marks are keyed by: the file's creation time, image count and name (the explorer's
    browser storage uses the same string, so marks made on one file never apply to another)."""
    return f"{attrs.get('created', '')}|{n}|{name}"


@dataclass
class Marks:
    """A person's review: row pairs ``(lo, hi)`` that are not duplicates, and rows to keep."""

    not_duplicate: set
    keep: set

    @classmethod
    def none(cls) -> "Marks":
        return cls(set(), set())


def read_marks(path: str | os.PathLike, paths: list[str], identity: str | None = None) -> Marks:
    """Read a marks file written by the explorer and check it against the file's images.

    Raises
    ------
    ExportError
        Not a marks file, made for another similarity file, or naming images this file does not
        have at those rows.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8", errors="surrogateescape"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not a marks file (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("dupscope_marks") != MARKS_VERSION:
        raise ExportError(f"{path} is not a dupscope marks file (written by the explorer's 'Export marks')")
    if identity is not None and doc.get("identity") not in (None, identity):
        raise ExportError(f"{path} holds marks made on another similarity file ({doc.get('identity')!r}, "
                          f"this one is {identity!r})")
    n = len(paths)

    def row(index, p) -> int:
        if not isinstance(index, int) or not 0 <= index < n or paths[index] != p:
            raise ExportError(f"{path}: image {index!r} ({p!r}) is not at that row of this file")
        return index

    marks = Marks.none()
    try:
        for e in doc.get("not_duplicate", []):
            i, j = row(e["a"], e["path_a"]), row(e["b"], e["path_b"])
            marks.not_duplicate.add((min(i, j), max(i, j)))
        for e in doc.get("keep", []):
            marks.keep.add(row(e["index"], e["path"]))
    except (KeyError, TypeError):
        raise ExportError(f"{path}: each mark needs a, b, path_a, path_b (pairs) or index, path (keep)") from None
    return marks


@dataclass(frozen=True)
class MergeList:
    """The complete-linkage hierarchy of a file's pairs: merge ``q`` joins the groups holding rows
    ``u[q]`` and ``v[q]`` at score ``level[q]`` (int32, int32, float32; levels never increase)."""

    u: np.ndarray
    v: np.ndarray
    level: np.ndarray

    def __len__(self) -> int:
        return len(self.u)


def merge_list(n: int, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> MergeList:
    """The merges of the rule in the module docstring, for ``n`` images and pairs ``(a, b, s)``
    (each pair once; NaN scores are no link). Computed by the compiled core
    (``cpp/include/dupscope/grouping.hpp``)."""
    from ._core import linkage_merges

    u, v, level = linkage_merges(int(n), np.ascontiguousarray(a, np.int32), np.ascontiguousarray(b, np.int32),
                                 np.ascontiguousarray(s, np.float32))
    return MergeList(u, v, level)


def groups_at(n: int, merges: MergeList, threshold: float, exclude: set | None = None) -> np.ndarray:
    """Group label per image (the group's lowest row) at ``threshold``, ``-1`` for images in no group.

    ``exclude``: pairs ``(lo, hi)`` marked "not a duplicate"; a merge that would put both rows of
    one into a group is not made.
    """
    from ._core import replay_merges

    pairs = np.array(sorted(exclude or ()), np.int32).reshape(-1, 2)
    return replay_merges(int(n), merges.u, merges.v, merges.level, float(np.float32(threshold)),
                         np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])).astype(np.int64)


def duplicate_groups(n: int, a: np.ndarray, b: np.ndarray, s: np.ndarray, threshold: float,
                     exclude: set | None = None) -> np.ndarray:
    """:func:`groups_at` of :func:`merge_list`: group label per image (its group's lowest row), ``-1``
    in no group.

    Parameters
    ----------
    n : int
        Number of images.
    a, b, s : numpy.ndarray
        Pairs (each once) and their scores.
    threshold : float
        Groups are joined by pairs scoring at least this.
    exclude : set of (int, int), optional
        Pairs ``(lo, hi)`` marked "not a duplicate", never in one group.
    """
    return groups_at(n, merge_list(n, a, b, s), threshold, exclude)


def choose_keepers(group: np.ndarray, width: np.ndarray, height: np.ndarray, keep: str = "largest",
                   prefer: set | None = None) -> np.ndarray:
    """Boolean per image: True for the image each group keeps (and for images in no group).
    Rows in ``prefer`` (marked "keep this one") come first in their group, before the rule."""
    if keep not in KEEP_RULES:
        raise ExportError(f"keep must be one of {', '.join(KEEP_RULES)}, not {keep!r}")
    keeper = group < 0
    area = np.asarray(width, np.int64) * np.asarray(height, np.int64)
    rows = np.flatnonzero(group >= 0)
    if not len(rows):
        return keeper
    key = -area[rows] if keep == "largest" else np.zeros(len(rows), np.int64)
    marked = np.isin(rows, np.fromiter(prefer or (), np.int64)).astype(np.int64)
    order = rows[np.lexsort((rows, key, -marked, group[rows]))]  # by group, marked, largest, row
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    keeper[order[first]] = True
    return keeper


@dataclass
class DeleteList:
    """One row per image (arrays of length N) and the threshold they were made at."""

    paths: list[str]
    group: np.ndarray
    keep: np.ndarray
    width: np.ndarray
    height: np.ndarray
    best_score: np.ndarray
    threshold: float

    def rows(self) -> list[dict]:
        """Rows as dicts: path, group (1-based, ``None`` when in no group), action, width, height,
        best_score (``None`` when the image has no neighbour)."""
        number = {g: k + 1 for k, g in enumerate(sorted(set(self.group[self.group >= 0].tolist())))}
        out = []
        for i, p in enumerate(self.paths):
            g = int(self.group[i])
            bs = float(self.best_score[i])
            out.append({"path": p, "group": number.get(g), "action": "keep" if self.keep[i] else "remove",
                        "width": int(self.width[i]), "height": int(self.height[i]),
                        "best_score": None if math.isnan(bs) else round(bs, 4)})
        return out


def delete_list(h5_path: str | os.PathLike, threshold: float | None = None, keep: str = "largest",
                marks: str | os.PathLike | Marks | None = None) -> DeleteList:
    """The delete list of a dupscope file at ``threshold`` (default: the suggested threshold),
    with a person's marks applied (a marks file from the explorer, see :func:`read_marks`).

    Raises
    ------
    ExportError
        The threshold is not a number in [0, 1], or the keep rule is unknown.
    FileNotFoundError, dupscope.store.IncompleteFileError
        The file is missing or unfinished.
    """
    from .store import SimilarityFile
    from .threshold import suggest_threshold

    if keep not in KEEP_RULES:
        raise ExportError(f"--keep must be one of {', '.join(KEEP_RULES)}, not {keep!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ExportError(f"the threshold must be a number in [0, 1], not {threshold!r}")
    with SimilarityFile(h5_path) as f:
        index, sim = f.neighbors()
        paths = f.paths
        width, height = f.widths, f.heights
        identity = file_identity(f.attrs, f.n, Path(h5_path).name)
    if marks is None:
        marks = Marks.none()
    elif not isinstance(marks, Marks):
        marks = read_marks(marks, paths, identity)
    if threshold is None:
        sug = suggest_threshold(sim[:, 0] if sim.shape[1] else np.zeros(0, np.float16))
        if math.isnan(sug.threshold):
            raise ExportError("no similarities in the file to suggest a threshold from: pass --threshold")
        threshold = float(sug.threshold)
    n = len(paths)
    a, b, s = neighbor_pairs(index, sim)
    group = duplicate_groups(n, a, b, s, threshold, exclude=marks.not_duplicate)
    best = np.full(n, np.nan, np.float32)
    if sim.shape[1]:
        best = sim[:, 0].astype(np.float32)
    return DeleteList(paths, group, choose_keepers(group, width, height, keep, prefer=marks.keep), width, height,
                      best, float(threshold))


def write_delete_list(dl: DeleteList, out: str | os.PathLike | None, fmt: str = "csv") -> str:
    """Write the rows as ``csv`` or ``json`` to ``out`` (or return the text when ``out`` is None)."""
    if fmt not in ("csv", "json"):
        raise ExportError(f"format must be csv or json, not {fmt!r}")
    rows = dl.rows()
    if fmt == "json":
        text = json.dumps({"threshold": dl.threshold, "images": rows}, indent=1) + "\n"
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["path", "group", "action", "width", "height", "best_score"],
                           lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        text = buf.getvalue()
    if out is not None:
        # surrogateescape: a name that was not valid UTF-8 is written as its original bytes, so a
        # script deleting the listed files finds them.
        Path(out).write_text(text, encoding="utf-8", errors="surrogateescape")
    return text
