"""Ground truth for :mod:`dupscope.evaluate`: duplicate pairs or groups from JSON or CSV, and
their names matched to the rows of a similarity file (by :mod:`dupscope.matching`'s rule, the one
the explorer's predictions use too)."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from .errors import EvaluationError

__all__ = ["GroundTruth", "GroundTruthLike", "load_ground_truth", "resolve_items", "true_pairs"]

GroundTruthLike = Union[str, "os.PathLike[str]", dict, Sequence]

@dataclass
class GroundTruth:
    """Duplicate pairs or groups as written by the user, before names are resolved.

    Attributes
    ----------
    pairs : list of (item, item)
        Explicit pairs.
    groups : list of list of item
        Groups; every two members form a true pair.
    source : str
        Where it was read from (for messages).

    Items are strings (paths or basenames, or decimal row indices) or ints (row indices).
    """

    pairs: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    source: str = "<ground truth>"

    def items(self) -> list:
        """Every item mentioned, in order of appearance (with repeats)."""
        out = [x for p in self.pairs for x in p]
        out += [x for g in self.groups for x in g]
        return out


def _from_json_value(data: Any, source: str) -> GroundTruth:
    if isinstance(data, dict):
        unknown = set(data) - {"pairs", "groups"}
        if not ({"pairs", "groups"} & set(data)):
            raise EvaluationError(
                f"{source}: a JSON object needs a 'pairs' or 'groups' key "
                f"(found {', '.join(map(repr, sorted(data))) or 'no keys'})"
            )
        if unknown:
            raise EvaluationError(f"{source}: unexpected keys {sorted(unknown)}; use 'pairs' and/or 'groups'")
        pairs = data.get("pairs") or []
        groups = data.get("groups") or []
    elif isinstance(data, list):
        pairs, groups = [], data
    else:
        raise EvaluationError(f"{source}: expected a JSON object or a list of groups, got {type(data).__name__}")
    for what, seq in (("pairs", pairs), ("groups", groups)):
        if not isinstance(seq, list):
            raise EvaluationError(f"{source}: '{what}' must be a list")
        for k, entry in enumerate(seq):
            if not isinstance(entry, (list, tuple)):
                raise EvaluationError(f"{source}: {what}[{k}] must be a list of images, got {entry!r}")
            if what == "pairs" and len(entry) != 2:
                raise EvaluationError(f"{source}: pairs[{k}] has {len(entry)} entries, expected 2: {entry!r}")
            for x in entry:
                if isinstance(x, bool) or not isinstance(x, (str, int)):
                    raise EvaluationError(
                        f"{source}: {what}[{k}] contains {x!r}; images are paths, basenames or row indices"
                    )
    return GroundTruth(pairs=[tuple(p) for p in pairs], groups=[list(g) for g in groups], source=source)


_GROUP_HEADERS = {"group", "group_id", "groupid", "cluster", "cluster_id", "dup_group", "duplicate_group"}
_PATH_HEADERS = {"path", "file", "filename", "file_name", "image", "image_path", "name", "id", "index"}


def _from_csv_text(text: str, source: str, known: Optional[set] = None) -> GroundTruth:
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if "\t" in first else ("," if "," in first else (";" if ";" in first else ","))
    rows = [[c.strip() for c in r] for r in csv.reader(io.StringIO(text), delimiter=delimiter)]
    rows = [r for r in rows if any(r) and not r[0].startswith("#")]
    if not rows:
        return GroundTruth(source=source)
    header = [c.lower() for c in rows[0]]
    group_col = next((k for k, c in enumerate(header) if c in _GROUP_HEADERS), None)
    if group_col is not None:
        if len(header) < 2:
            raise EvaluationError(f"{source}: a group table needs a path column and a group column")
        path_col = next((k for k, c in enumerate(header) if c in _PATH_HEADERS and k != group_col),
                        next(k for k in range(len(header)) if k != group_col))
        groups: dict[str, list] = {}
        for line, r in enumerate(rows[1:], start=2):
            if len(r) <= max(path_col, group_col):
                raise EvaluationError(f"{source}: row {line} has {len(r)} columns, expected {len(header)}")
            groups.setdefault(r[group_col], []).append(r[path_col])
        return GroundTruth(groups=list(groups.values()), source=source)
    # Pairs, with or without a header: the first row is a header when none of it names an image.
    body = rows
    if known is not None and not any(c in known or _is_int(c) for c in rows[0][:2]):
        body = rows[1:]
    elif known is None and header[:2] in (["a", "b"], ["path_a", "path_b"], ["image_a", "image_b"],
                                          ["left", "right"], ["path1", "path2"], ["image1", "image2"]):
        body = rows[1:]
    pairs = []
    for line, r in enumerate(body, start=1 + (len(rows) - len(body))):
        if len(r) < 2 or not r[0] or not r[1]:
            raise EvaluationError(
                f"{source}: row {line} should hold two images (a,b), got {delimiter.join(r)!r}; "
                "for groups use a header with columns path,group"
            )
        pairs.append((r[0], r[1]))
    return GroundTruth(pairs=pairs, source=source)


def _is_int(text: Any) -> bool:
    if isinstance(text, bool):
        return False
    if isinstance(text, (int, np.integer)):
        return True
    return isinstance(text, str) and text.strip().lstrip("+").isdigit()


def load_ground_truth(source: GroundTruthLike, known: Optional[Iterable[str]] = None) -> GroundTruth:
    """Read duplicate pairs or groups.

    Parameters
    ----------
    source : path, dict or list
        A file: JSON (``{"pairs": [[a, b], ...]}``, ``{"groups": [[a, b, c], ...]}``, or a plain
        list of groups) or CSV/TSV (two columns ``a,b`` per pair, optionally with a header; or a
        header with ``path`` and ``group`` columns, one image per row). Or the same structures
        already in memory: a dict, or a list of groups.
    known : iterable of str, optional
        Image names (paths and basenames) of the file being evaluated, used to tell whether the
        first CSV row is a header.

    Returns
    -------
    GroundTruth

    Raises
    ------
    EvaluationError
        Unreadable or malformed ground truth.
    """
    if isinstance(source, GroundTruth):
        return source
    if isinstance(source, (dict, list, tuple)):
        return _from_json_value(list(source) if isinstance(source, tuple) else source, "<ground truth>")
    path = Path(source)
    if not path.is_file():
        raise EvaluationError(f"ground truth file {path} does not exist")
    # As annotation files: UTF-8, other bytes kept as surrogate escapes so names still match.
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path}: not valid JSON ({exc})") from None
        return _from_json_value(data, str(path))
    return _from_csv_text(text, str(path), set(known) if known is not None else None)


def resolve_items(items: Sequence[Any], paths: Sequence[str],
                  resolved_paths: Optional[Sequence[str]] = None, source: str = "ground truth") -> np.ndarray:
    """Turn ground-truth items into row indices of the similarity file.

    A name matches by the rule of :mod:`dupscope.matching` (path, resolved path, normalised path,
    then a file name only one image has); an integer, or a string of digits that matches no
    image, is a row index.

    Parameters
    ----------
    items : sequence of str or int
    paths : sequence of str
        ``images/path`` of the file.
    resolved_paths : sequence of str, optional
        ``images/resolved_path`` of the file.
    source : str
        Named in error messages.

    Returns
    -------
    numpy.ndarray
        int64 row indices, one per item.

    Raises
    ------
    EvaluationError
        Listing (up to five of) the items that match no image, file names shared by several
        images, and indices out of range.
    """
    from .matching import AMBIGUOUS, UNKNOWN, PathIndex

    n = len(paths)
    index = PathIndex(paths, resolved_paths)
    out = np.empty(len(items), np.int64)
    unknown: list[str] = []
    ambiguous: list[str] = []
    out_of_range: list[str] = []
    for k, item in enumerate(items):
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            idx = int(item)
            if not 0 <= idx < n:
                out_of_range.append(str(idx))
                idx = -1
            out[k] = idx
            continue
        s = str(item)
        idx = index.row(s)
        if idx == AMBIGUOUS:
            shared = index.sharing(s)
            ambiguous.append(f"{s} ({', '.join(shared)}{', ...' if len(shared) >= 3 else ''})")
            out[k] = -1
            continue
        if idx == UNKNOWN:
            idx = None
        if idx is None and _is_int(s):
            idx = int(s)
            if not 0 <= idx < n:
                out_of_range.append(s)
                idx = -1
        if idx is None:
            unknown.append(s)
            idx = -1
        out[k] = idx

    problems = []
    if unknown:
        uniq = list(dict.fromkeys(unknown))
        examples = ", ".join(repr(u) for u in uniq[:5])
        more = f" and {len(uniq) - 5} more" if len(uniq) > 5 else ""
        hint = f" (the file's images look like {paths[0]!r})" if n else ""
        problems.append(f"{len(uniq)} names match no image in the file: {examples}{more}{hint}")
    if ambiguous:
        uniq = list(dict.fromkeys(ambiguous))
        problems.append(f"{len(uniq)} file names belong to several images, give the path instead: "
                        + "; ".join(uniq[:5]) + (" ..." if len(uniq) > 5 else ""))
    if out_of_range:
        uniq = list(dict.fromkeys(out_of_range))
        problems.append(f"row indices out of range 0..{n - 1}: {', '.join(uniq[:5])}"
                        + (" ..." if len(uniq) > 5 else ""))
    if problems:
        raise EvaluationError(f"{source}: " + "; ".join(problems))
    return out


def true_pairs(gt: GroundTruth, paths: Sequence[str],
               resolved_paths: Optional[Sequence[str]] = None) -> np.ndarray:
    """The distinct true pairs ``(i, j)``, ``i < j``, as an (M, 2) int64 array sorted by ``(i, j)``.

    Groups expand to all pairs of their members; a pair of an image with itself is dropped.
    """
    items = gt.items()
    rows = resolve_items(items, paths, resolved_paths, source=gt.source)
    chunks = []
    pos = 0
    if gt.pairs:
        r = rows[: 2 * len(gt.pairs)].reshape(-1, 2)
        chunks.append(r)
        pos = 2 * len(gt.pairs)
    for g in gt.groups:
        members = np.unique(rows[pos: pos + len(g)])
        pos += len(g)
        if len(members) >= 2:
            a, b = np.triu_indices(len(members), k=1)
            chunks.append(np.stack([members[a], members[b]], axis=1))
    if not chunks:
        return np.empty((0, 2), np.int64)
    pairs = np.concatenate(chunks)
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    keep = lo != hi
    n = max(len(paths), 1)
    keys = np.unique(lo[keep] * n + hi[keep])
    return np.stack([keys // n, keys % n], axis=1)
