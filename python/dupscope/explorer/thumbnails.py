"""Small thumbnails for the explorer, made once with Pillow in threads and stored next to the page.

Thumbnails are named by image row (``thumbs/<row // 1000>/<row>.<ext>``) so the page can compute
their URLs without a per-image name. A manifest records the source path, its size and mtime and the
thumbnail settings; a later build reuses every thumbnail whose source did not change.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["thumbnail_relpath", "make_thumbnails", "default_format"]

_SHARD = 1000
_MANIFEST = "manifest.json"


def default_format() -> str:
    """``"webp"`` when this Pillow can write it (smaller at the same quality), else ``"jpg"``."""
    from PIL import features

    return "webp" if features.check("webp") else "jpg"


def thumbnail_relpath(index: int, ext: str) -> str:
    """Path of image ``index``'s thumbnail relative to the explorer folder (POSIX separators)."""
    return f"thumbs/{index // _SHARD}/{index}.{ext}"


def _source_key(path: str) -> list | None:
    from ..shards import file_of

    try:
        st = os.stat(file_of(path))  # a shard member: its shard's size and time
    except OSError:
        return None
    return [path, st.st_size, st.st_mtime_ns]


def _make_one(src: str, dst: Path, size: int, ext: str) -> None:
    from PIL import Image

    from ..images import decode_image

    # The decoder phase 1 uses: upright, 16-bit and float images scaled (not clipped to white),
    # transparency composited, JPEG drafted to 1/2..1/8 scale, special files refused.
    im, _, _ = decode_image(src, colour="rgb", draft_size=size * 2)
    im.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    if ext == "webp":
        im.save(tmp, "WEBP", quality=72, method=4)
    else:
        im.save(tmp, "JPEG", quality=80, optimize=True, progressive=False)
    os.replace(tmp, dst)


class _Progress:
    """A rich progress bar on stderr (a plain bar when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled and total > 0
        self._lock = threading.Lock()
        self._bar = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("thumbnails"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=False)
            self._task = self._bar.add_task("thumbnails", total=total)
            self._bar.start()

    def advance(self) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.advance(self._task)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def make_thumbnails(
    sources: Sequence[str],
    ok: np.ndarray,
    target_dir: str | os.PathLike[str],
    *,
    size: int = 128,
    ext: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, dict[int, str], str]:
    """Make (or reuse) a thumbnail for every image that decoded.

    Parameters
    ----------
    sources
        ``images/resolved_path`` per image.
    ok
        ``images/ok`` per image; failed images get no thumbnail (the page shows a placeholder).
    target_dir
        The explorer folder; thumbnails go to ``target_dir/thumbs``.
    size
        Longest side in pixels.
    ext
        ``"webp"`` or ``"jpg"``; default :func:`default_format`.
    workers
        Threads (Pillow releases the GIL while decoding, resizing and encoding); default
        ``min(32, cpu_count + 4)``.
    progress
        Print a counter on stderr.

    Returns
    -------
    has_thumb : numpy.ndarray
        (N,) bool, whether image ``i`` has a thumbnail.
    failures : dict
        Row -> reason for images that were ok in the file but could not be thumbnailed now.
    ext : str
        The format used.
    """
    ext = ext or default_format()
    if ext not in ("webp", "jpg"):
        raise ValueError(f"thumbnail format must be 'webp' or 'jpg', not {ext!r}")
    root = Path(target_dir) / "thumbs"
    root.mkdir(parents=True, exist_ok=True)
    n = len(sources)
    manifest_path = root / _MANIFEST
    old: dict = {}
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    same_settings = old.get("size") == size and old.get("ext") == ext
    old_entries = old.get("entries", {}) if same_settings else {}
    entries: dict[str, list] = {}
    has_thumb = np.zeros(n, dtype=bool)
    failures: dict[int, str] = {}
    todo: list[tuple[int, str, list | None]] = []
    for i in np.flatnonzero(np.asarray(ok, dtype=bool)):
        i = int(i)
        src = sources[i]
        key = _source_key(src)
        dst = root / str(i // _SHARD) / f"{i}.{ext}"
        if key is not None and old_entries.get(str(i)) == key and dst.exists():
            entries[str(i)] = key
            has_thumb[i] = True
        else:
            todo.append((i, src, key))
    bar = _Progress(len(todo), progress)

    def work(item: tuple[int, str, list | None]) -> tuple[int, str | None]:
        i, src, _ = item
        try:
            _make_one(src, root / str(i // _SHARD) / f"{i}.{ext}", size, ext)
            return i, None
        except Exception as exc:  # noqa: BLE001 - any decoder failure becomes a placeholder
            return i, f"{type(exc).__name__}: {exc}"
        finally:
            bar.advance()

    n_workers = workers or min(32, (os.cpu_count() or 1) + 4)
    keys = {i: key for i, _, key in todo}
    try:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="dupscope-thumb") as pool:
            for i, err in pool.map(work, todo, chunksize=64):
                if err is None:
                    has_thumb[i] = True
                    if keys[i] is not None:
                        entries[str(i)] = keys[i]
                else:
                    failures[i] = err
    finally:
        bar.close()
    tmp = manifest_path.with_name(_MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"size": size, "ext": ext, "entries": entries}), encoding="utf-8")
    os.replace(tmp, manifest_path)
    return has_thumb, failures, ext
