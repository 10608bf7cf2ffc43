"""Write the explorer folder: ``index.html``, ``data.js``, ``assets/`` and ``thumbs/``.

The folder is self-contained (no network, no absolute paths needed), so it works opened from disk
by double-clicking ``index.html``, after being copied elsewhere, and served by ``dupscope serve``.
"""

from __future__ import annotations

import html
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import EXPLORER_MARKER
from ..errors import PredictionsError, VisualizeError
from .pagedata import originals, page_data_json, part_script, read_page_data
from .thumbnails import default_format, make_thumbnails

__all__ = ["build_explorer", "check_target", "mark_target", "ORIGINALS_FILE"]

#: Dotfile in the explorer folder naming the folder of the originals that ``dupscope serve``
#: serves under ``/_originals/`` (a dotfile: the server never serves it itself).
ORIGINALS_FILE = ".dupscope-originals"

_HERE = Path(__file__).resolve().parent
_ASSETS = ("explorer.js", "explorer.css", "placeholder.svg", "favicon.svg")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def check_target(target: Path, h5_path: Path | None = None, *, overwrite: bool = False) -> None:
    """Refuse to write the explorer into ``target`` when that would overwrite someone's files.

    ``target`` may be missing, empty, a folder dupscope wrote (it holds the marker file
    :data:`dupscope.annotations.EXPLORER_MARKER`), or a folder holding only the similarity file
    being shown (``dupscope run`` writes it there first). Anything else needs ``overwrite``.

    Raises
    ------
    dupscope.errors.VisualizeError
    """
    if target.exists() and not target.is_dir():
        raise VisualizeError(f"{target} is a file, not a folder: give the folder to write the explorer into")
    if overwrite or not target.is_dir() or (target / EXPLORER_MARKER).exists():
        return
    ours = set()
    if h5_path is not None and h5_path.absolute().parent == target.absolute():
        ours = {h5_path.name, h5_path.name + ".partial", h5_path.name + ".lock"}
    others = sorted(e.name for e in os.scandir(target) if e.name not in ours)
    if others:
        raise VisualizeError(
            f"{target} already holds files that dupscope did not write ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}): choose a new or empty folder, or pass --overwrite "
            "(index.html, data.js, assets/ and thumbs/ would be replaced)")


def mark_target(target: Path) -> None:
    """Create ``target`` and mark it as written by dupscope."""
    target.mkdir(parents=True, exist_ok=True)
    marker = target / EXPLORER_MARKER
    if not marker.exists():
        marker.write_text("This folder was written by dupscope (https://pypi.org/project/dupscope).\n",
                          encoding="utf-8")


def build_explorer(
    h5_path: str | os.PathLike[str],
    target_dir: str | os.PathLike[str],
    *,
    predictions: Any = None,
    trust_pickle: bool = False,
    thumb_size: int = 128,
    workers: int | None = None,
    progress: bool = True,
    thumbnails: bool = True,
    thumb_format: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the duplicate explorer for a similarity file into ``target_dir``.

    Parameters
    ----------
    h5_path
        A complete similarity HDF5 file (``docs/SCHEMA.md``).
    target_dir
        Folder to write (created if needed); originals are never copied into it.
    predictions
        Optional model predictions: a pickle path (loaded with the restricted unpickler unless
        ``trust_pickle``), an already loaded object, or a :class:`dupscope.explorer.predictions.Predictions`.
    trust_pickle
        Load the predictions pickle with the standard, unrestricted unpickler.
    thumb_size
        Longest side of thumbnails in pixels.
    workers
        Threads making thumbnails (default: a few more than the CPU count).
    progress
        Print progress on stderr.
    thumbnails
        Make thumbnails; ``False`` shows placeholders (used by benchmarks with no real images).
    thumb_format
        ``"webp"`` or ``"jpg"`` (default: WebP when Pillow supports it).
    overwrite
        Write into a non-empty folder that dupscope did not write (see :func:`check_target`).

    Returns
    -------
    pathlib.Path
        Path of ``index.html``.

    Raises
    ------
    dupscope.errors.IncompleteFileError
        The file's root attribute ``complete`` is not True.
    dupscope.errors.SimilarityFileError
        The file cannot be read (not HDF5, truncated, datasets missing or of the wrong kind).
    dupscope.errors.PredictionsError
        The predictions cannot be read or do not have exactly one entry per image.
    dupscope.errors.VisualizeError
        ``target_dir`` is a file, or a folder holding other files (without ``overwrite``).
    """
    from .predictions import ELEMENTS_PER_IMAGE, MAX_ELEMENTS, Predictions, align_predictions, load_predictions

    t0 = time.perf_counter()
    h5_path = Path(h5_path)
    target = Path(target_dir)
    check_target(target, h5_path, overwrite=overwrite)
    data = read_page_data(h5_path)
    _log(progress, f"read {h5_path.name}: {data.n} images, {data.pair_a.size} neighbour pairs "
                   f"({time.perf_counter() - t0:.1f} s)")

    preds = None
    if predictions is not None:
        if isinstance(predictions, Predictions):
            preds = predictions
        else:
            source = "predictions"
            if isinstance(predictions, (str, os.PathLike)):
                source = str(predictions)
                predictions = load_predictions(predictions, trust_pickle=trust_pickle,
                                               max_elements=MAX_ELEMENTS + ELEMENTS_PER_IMAGE * data.n)
            preds = align_predictions(predictions, data.paths, labels=data.labels, source=source)
        if len(preds.score) != data.n:
            raise PredictionsError(f"predictions have {len(preds.score)} entries, the file has {data.n} images")
        if preds.missing:
            shown = ", ".join(preds.missing[:5]) + (" ..." if len(preds.missing) > 5 else "")
            print(f"warning: no prediction for {len(preds.missing)} image(s): {shown}", file=sys.stderr)
        if preds.unmatched:
            shown = ", ".join(preds.unmatched[:5]) + (" ..." if len(preds.unmatched) > 5 else "")
            print(f"warning: {len(preds.unmatched)} prediction key(s) match no image: {shown}",
                  file=sys.stderr)

    mark_target(target)
    ext = thumb_format or default_format()
    if thumbnails:
        t1 = time.perf_counter()
        has_thumb, failures, ext = make_thumbnails(
            data.resolved_paths, data.ok, target, size=thumb_size, ext=ext, workers=workers,
            progress=progress,
        )
        if failures:
            first = next(iter(failures.items()))
            print(f"warning: {len(failures)} image(s) could not be thumbnailed now "
                  f"(first: {data.paths[first[0]]}: {first[1]}); they show a placeholder",
                  file=sys.stderr)
        _log(progress, f"thumbnails: {int(has_thumb.sum())} ready ({time.perf_counter() - t1:.1f} s)")
    else:
        has_thumb = np.zeros(data.n, dtype=bool)

    assets = target / "assets"
    assets.mkdir(exist_ok=True)
    for name in _ASSETS:
        shutil.copyfile(_HERE / "static" / name, assets / name)

    from ..export import file_identity

    root, rel, sizes = originals(data.resolved_paths, target, data.has_paths)
    if root is not None:
        _write_atomic(target / ORIGINALS_FILE, root + "\n")
    elif (target / ORIGINALS_FILE).exists():
        (target / ORIGINALS_FILE).unlink()
    parts: dict[str, str] = {}
    payload = page_data_json(
        data, has_thumb=has_thumb, thumb_ext=ext, thumb_size=thumb_size, predictions=preds,
        source=h5_path.name, identity=file_identity(data.attrs, data.n, h5_path.name),
        original_root=root, original_rel=rel, sizes=sizes, target=target, parts=parts,
    )
    part_dir = target / "data"
    if part_dir.is_dir():
        shutil.rmtree(part_dir)  # parts of an earlier, larger file
    if parts:
        part_dir.mkdir()
        for key, b64 in parts.items():
            _write_atomic(part_dir / f"{key}.js", part_script(key, b64))
    _write_atomic(target / "data.js", "window.DUPSCOPE_DATA = " + payload + ";\n")

    template = (_HERE / "templates" / "index.html").read_text(encoding="utf-8")
    page = (template
            .replace("{{ title }}", html.escape(f"dupscope - {h5_path.name}"))
            .replace("{{ generated }}", html.escape(datetime.now(timezone.utc).isoformat(timespec="seconds"))))
    index = target / "index.html"
    # index.html last: a folder with an index.html always has the data it needs.
    _write_atomic(index, page)
    _log(progress, f"wrote {index} ({time.perf_counter() - t0:.1f} s)")
    return index
