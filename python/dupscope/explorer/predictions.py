"""Model predictions shown next to each image: a restricted unpickler and alignment to the images.

A pickle can run arbitrary code when loaded, and a predictions file is often something a colleague
sends over. :func:`load_predictions` therefore only rebuilds plain containers, numbers, strings and
numpy arrays unless the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import PredictionsError, UnsafePickleError

__all__ = [
    "PredictionsError",
    "UnsafePickleError",
    "Predictions",
    "load_predictions",
    "align_predictions",
    "read_predictions",
]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol 2 pickles store the bytes of numpy arrays as ``_codecs.encode(str, "latin1")``;
    # only that exact use is allowed, so the stand-in refuses any other codec.
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals a predictions pickle may reference, mapped to what they resolve to.

    Resolved here from the numpy that is installed rather than by importing the module named in
    the pickle: numpy 2 warns when ``numpy.core`` is imported, and pickles written by numpy 1
    name ``numpy.core`` while those written by numpy 2 name ``numpy._core``.
    """
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        # Protocol 5 (pickle.HIGHEST_PROTOCOL, and the default from Python 3.14) stores contiguous
        # arrays as a buffer rebuilt by ``_frombuffer``: it only wraps bytes with a dtype and shape.
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of :func:`_allowed_globals`."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global '{module}.{name}': a predictions pickle "
                "may only hold lists, tuples, dicts, numbers, strings and numpy arrays. If you "
                "trust this file (loading it can run arbitrary code), pass --trust-pickle "
                "(trust_pickle=True)."
            ) from None


#: Elements a predictions pickle may hold (counted through every reference, arrays by size),
#: besides :data:`ELEMENTS_PER_IMAGE` per image: a pickle that repeats references to one list can
#: describe gigabytes in a few hundred bytes.
MAX_ELEMENTS = 1_000_000
ELEMENTS_PER_IMAGE = 4096


def load_predictions(path: str | os.PathLike[str], *, trust_pickle: bool = False,
                     max_elements: int | None = None) -> Any:
    """Load a predictions pickle, refusing anything but plain data unless trusted.

    Parameters
    ----------
    path
        The pickle file.
    trust_pickle
        Load with the standard unpickler (can execute code from the file).
    max_elements
        Most elements (list items, dict entries, array values, counted through every reference)
        the result may hold; default :data:`MAX_ELEMENTS`. Checked before anything is expanded.

    Returns
    -------
    object
        What the pickle holds: a sequence or array of scores, an (N, C) array of class scores, or
        a dict keyed by file name.

    Raises
    ------
    UnsafePickleError
        The pickle references a global outside the allowed set, or holds more than
        ``max_elements``; the message says which.
    PredictionsError
        The file is missing, a folder, empty, or not a readable pickle.
    """
    path = Path(path)
    if path.is_dir():
        raise PredictionsError(f"{path} is a folder, not a predictions pickle")
    if not path.exists():
        raise PredictionsError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise PredictionsError(f"{path} is empty (0 bytes), not a predictions pickle")
    with open(path, "rb") as fh:
        if trust_pickle:
            return pickle.load(fh)
        try:
            obj = _RestrictedUnpickler(fh, str(path)).load()
        except UnsafePickleError:
            raise
        except MemoryError:
            raise UnsafePickleError(f"{path}: the pickle asks for more memory than is available") from None
        except Exception as exc:  # noqa: BLE001 - every way a hostile file can fail to load
            raise PredictionsError(f"{path} is not a readable predictions pickle ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:200]})") from None
    _check_size(obj, MAX_ELEMENTS if max_elements is None else max_elements, str(path))
    return obj


def _check_size(obj: Any, budget: int, source: str) -> None:
    """Walk ``obj`` through every reference, refusing it past ``budget`` elements."""
    count = 0
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, np.ndarray):
            count += x.size
            if x.dtype == object:
                stack.extend(x.ravel().tolist() if x.size <= budget else ())
        elif isinstance(x, dict):
            count += len(x)
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            count += len(x)
            stack.extend(x)
        else:
            count += 1
        if count > budget:
            raise UnsafePickleError(
                f"{source}: the pickle holds more than {budget:,} values (counted through its shared "
                "references); a predictions file has a few values per image. If you trust it, pass "
                "--trust-pickle")


@dataclass
class Predictions:
    """Predictions aligned one-to-one with the images of a similarity file.

    Attributes
    ----------
    score
        (N,) float64: the score shown per image (the top class's score for class scores), NaN where
        the image has no prediction.
    top_class
        (N,) int64 index of the top class, -1 where missing; ``None`` for plain scores.
    class_names
        Names of the classes when ``top_class`` is set (the class index as text when the labels of
        the file do not map onto the columns).
    missing
        Image paths for which a dict of predictions had no entry.
    unmatched
        Keys of a dict of predictions that matched no image.
    """

    score: np.ndarray
    top_class: np.ndarray | None = None
    class_names: list[str] | None = None
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def describe(self, index: int) -> str:
        """Text shown next to image ``index`` (``""`` when it has no prediction)."""
        s = self.score[index]
        if not np.isfinite(s):
            return ""
        if self.top_class is None:
            return f"{s:.3f}"
        c = int(self.top_class[index])
        name = self.class_names[c] if self.class_names and 0 <= c < len(self.class_names) else str(c)
        return f"{name} {s:.3f}"


def _as_numeric(value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PredictionsError(f"{what}: expected numbers, got {type(value).__name__} ({exc})") from None
    return arr


def _class_names(n_classes: int, labels: Sequence[str] | None) -> list[str]:
    """Category names for the columns of class scores.

    The labels of the file map onto the columns when the file has exactly ``n_classes`` distinct
    non-empty labels; they are taken in sorted order, the order most training code (for example
    folder-per-class datasets) assigns class indices in. Otherwise the index itself is shown.
    """
    if labels is not None:
        distinct = sorted({str(x) for x in labels if x})
        if len(distinct) == n_classes:
            return distinct
    return [str(c) for c in range(n_classes)]


def _from_matrix(arr: np.ndarray, labels: Sequence[str] | None) -> Predictions:
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        return Predictions(score=arr.reshape(-1).astype(np.float64))
    if arr.ndim != 2:
        raise PredictionsError(
            f"predictions must be N scores or an N x C array of class scores, got shape {arr.shape}"
        )
    finite = np.isfinite(arr)
    any_finite = finite.any(axis=1)
    filled = np.where(finite, arr, -np.inf)
    top = filled.argmax(axis=1)
    score = np.where(any_finite, filled[np.arange(arr.shape[0]), top], np.nan)
    top = np.where(any_finite, top, -1).astype(np.int64)
    return Predictions(score=score, top_class=top, class_names=_class_names(arr.shape[1], labels))


def align_predictions(
    predictions: Any,
    paths: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    source: str = "predictions",
) -> Predictions:
    """Match loaded predictions to the images, one entry per image.

    Parameters
    ----------
    predictions
        A sequence or (N,) array of scores, an (N, C) array of class scores, or a dict keyed by file
        name whose values are scores or class-score vectors.
    paths
        ``images/path`` of the similarity file, in row order.
    labels
        ``images/label`` of the similarity file, used to name the classes of class scores.
    source
        Name of the predictions file, used in error messages.

    Returns
    -------
    Predictions
        Aligned scores (and top class for class scores).

    Raises
    ------
    PredictionsError
        A length mismatch (the message names both lengths), an unusable shape, or a dict whose keys
        are ambiguous.

    Notes
    -----
    Dict keys match ``images/path`` exactly first, then its base name when that base name is
    unique among the images. Images without an entry get no prediction and are listed in
    ``missing``; keys that match no image are listed in ``unmatched``.
    """
    n = len(paths)
    if isinstance(predictions, Mapping):
        return _align_dict(predictions, paths, labels, source)
    if isinstance(predictions, (str, bytes)):
        raise PredictionsError(f"{source}: expected scores, got a string")
    arr = _as_numeric(predictions, source)
    if arr.ndim == 0:
        raise PredictionsError(f"{source}: expected one entry per image, got a single number")
    if arr.shape[0] != n:
        raise PredictionsError(
            f"{source} has {arr.shape[0]} entries but the similarity file has {n} images: "
            "predictions must have exactly one entry per image, in the order of the annotations"
        )
    return _from_matrix(arr, labels)


def _align_dict(
    predictions: Mapping[Any, Any],
    paths: Sequence[str],
    labels: Sequence[str] | None,
    source: str,
) -> Predictions:
    from ..matching import AMBIGUOUS, UNKNOWN, PathIndex, basename

    n = len(paths)
    index = PathIndex(paths)
    rows: list[int] = []
    values: list[Any] = []
    unmatched: list[str] = []
    seen: dict[int, str] = {}
    for key, value in predictions.items():
        k = str(key)
        i = index.row(k)
        if i == AMBIGUOUS:
            raise PredictionsError(
                f"{source}: key {k!r} matches several images with the file name {basename(k)!r}; "
                "key the predictions by the full path as written in the annotations"
            )
        if i == UNKNOWN:
            unmatched.append(k)
            continue
        if i in seen:
            raise PredictionsError(
                f"{source}: keys {seen[i]!r} and {k!r} both match image {paths[i]!r}; "
                "predictions must have exactly one entry per image"
            )
        seen[i] = k
        rows.append(i)
        values.append(value)
    if not rows:
        raise PredictionsError(
            f"{source}: none of its {len(predictions)} keys matches an image path or file name "
            f"(first key: {next(iter(predictions), None)!r}, first image: {paths[0] if n else None!r})"
        )
    vals = _as_numeric(values, source)
    if vals.ndim == 1 or (vals.ndim == 2 and vals.shape[1] == 1):
        full = np.full(n, np.nan)
        full[rows] = vals.reshape(-1)
    elif vals.ndim == 2:
        full = np.full((n, vals.shape[1]), np.nan)
        full[rows] = vals
    else:
        raise PredictionsError(f"{source}: dict values must be scores or class-score vectors")
    out = _from_matrix(full, labels)
    have = np.zeros(n, dtype=bool)
    have[rows] = True
    out.missing = [paths[i] for i in np.flatnonzero(~have)]
    out.unmatched = unmatched
    return out


def read_predictions(
    path: str | os.PathLike[str],
    paths: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    trust_pickle: bool = False,
) -> Predictions:
    """Load a predictions pickle and align it to the images (see :func:`align_predictions`)."""
    obj = load_predictions(path, trust_pickle=trust_pickle,
                           max_elements=MAX_ELEMENTS + ELEMENTS_PER_IMAGE * len(paths))
    return align_predictions(obj, paths, labels=labels, source=str(path))
