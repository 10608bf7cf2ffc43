"""Checkpoints of phase 1's embedding, so that an interrupted run resumes where it stopped.

While ``dupscope similarity`` embeds, every block of finished rows (embedded or failed) is saved
beside the output as one file in ``<output>.partial.d/``: written under a temporary name, then
renamed, so a block is either there whole or not at all, whatever stops the run (Ctrl+C, a kill
-9, a lost machine). HDF5 itself gives no such promise for a writer that is killed, which is why
the blocks are not kept inside ``<output>.partial``. Run the same command again and only the rows
in no block are decoded and embedded; the rest of phase 1 (post-processing, similarity,
verification) then runs on the whole set as an uninterrupted run would, and gives the same file.

A checkpoint belongs to one run: its ``key`` (the model's checksum, the list of image files, the
batch size, the device, the embedding's dtype and whether layouts are kept) must match, or it is
discarded with a message. It is deleted once the output is complete. The run's output lock
(``<output>.lock``) guards it as it guards the ``.partial``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .embed import EmbedResult
from .store import partial_path

__all__ = ["EmbeddingCheckpoint", "checkpoint_key", "CHECKPOINT_ROWS", "CHECKPOINT_SECONDS"]

#: A block is saved once this many rows are finished ...
CHECKPOINT_ROWS = int(os.environ.get("DUPSCOPE_CHECKPOINT_ROWS", "2048"))
#: ... or this many seconds have passed since the last block (whichever comes first).
CHECKPOINT_SECONDS = 30.0


def checkpoint_key(paths: Sequence[str], *parts: object) -> str:
    """A digest of the image list and the run's settings that change the embeddings."""
    h = hashlib.sha256()
    for p in paths:
        h.update(os.fsencode(p) + b"\0")
    for x in parts:
        h.update(repr(x).encode() + b"\0")
    return h.hexdigest()


class EmbeddingCheckpoint:
    """The block files of one output (see the module docstring).

    Parameters
    ----------
    output : path-like
        The similarity file being written.
    key : str
        :func:`checkpoint_key` of this run.
    n : int
        Number of images.
    """

    def __init__(self, output: str | os.PathLike, key: str, n: int) -> None:
        self.folder = Path(str(partial_path(output)) + ".d")
        self.key, self.n = key, n
        self._rows: list[np.ndarray] = []
        self._last = time.monotonic()
        self._blocks = 0
        self.note = ""

    # -- reading -------------------------------------------------------------------------------
    def load(self) -> tuple[np.ndarray, EmbedResult] | None:
        """The rows saved by an earlier run with the same key, as ``(done, result)`` for
        :func:`dupscope.embed.embed_images`'s ``resume``; None when there is none. A checkpoint
        of another run, or one that cannot be read, is removed (``note`` says why)."""
        if not self.folder.is_dir():
            return None
        try:
            key = (self.folder / "key").read_text(encoding="ascii").strip()
        except OSError:
            key = ""
        if key != self.key:
            self.note = f"discarded the checkpoint in {self.folder}: it is from a run with other images or settings"
            self.remove()
            return None
        done = np.zeros(self.n, bool)
        parts = []
        files = sorted(self.folder.glob("block-*.npz"))
        # New blocks go after every existing name, unreadable ones included (never over a block).
        self._blocks = max((int(f.stem.split("-")[1]) for f in files if f.stem.split("-")[1].isdigit()), default=-1) + 1
        for f in files:
            try:
                with np.load(f, allow_pickle=False) as z:
                    parts.append({k: z[k] for k in z.files})
            except (OSError, ValueError, KeyError):
                continue  # a block is renamed into place whole; anything else is ignored
        if not parts:
            return None
        dim = parts[0]["embeddings"].shape[1]
        emb = np.zeros((self.n, dim), parts[0]["embeddings"].dtype)
        ok = np.zeros(self.n, bool)
        errors = [""] * self.n
        widths = np.zeros(self.n, np.int32)
        heights = np.zeros(self.n, np.int32)
        layout = np.zeros((self.n, parts[0]["layout"].shape[1]), np.float16) if "layout" in parts[0] else None
        for z in parts:
            rows = z["rows"]
            if len(rows) and (rows.min() < 0 or rows.max() >= self.n or z["embeddings"].shape[1] != dim):
                continue
            done[rows] = True
            emb[rows] = z["embeddings"]
            ok[rows] = z["ok"]
            widths[rows], heights[rows] = z["widths"], z["heights"]
            for r, e in zip(rows.tolist(), z["errors"].tolist()):
                errors[r] = e
            if layout is not None and "layout" in z:
                layout[rows] = z["layout"]
        return done, EmbedResult(emb, ok, errors, widths, heights, device="", seconds=0.0, model=None,
                                 layout=layout)

    # -- writing -------------------------------------------------------------------------------
    def add(self, rows: np.ndarray, result: EmbedResult, *, force: bool = False) -> None:
        """Note finished rows; save a block when enough rows or time have gathered."""
        self._rows.append(np.asarray(rows, np.int64))
        pending = sum(len(r) for r in self._rows)
        if pending and (force or pending >= CHECKPOINT_ROWS or time.monotonic() - self._last >= CHECKPOINT_SECONDS):
            self._save(np.concatenate(self._rows), result)
            self._rows = []
            self._last = time.monotonic()

    def ensure_folder(self) -> Path:
        """The checkpoint folder, created with its key file if missing (later steps of the run,
        such as the Ray backend's top-k tasks, keep their own checkpoints in it)."""
        if not self.folder.is_dir():
            self.folder.mkdir()
            tmp = self.folder / "key.tmp"
            tmp.write_text(self.key + "\n", encoding="ascii")
            os.replace(tmp, self.folder / "key")
        return self.folder

    def _save(self, rows: np.ndarray, result: EmbedResult) -> None:
        self.ensure_folder()
        arrays = {
            "rows": rows,
            "embeddings": result.embeddings[rows],
            "ok": result.ok[rows],
            "widths": result.widths[rows],
            "heights": result.heights[rows],
            "errors": np.array([result.errors[r] for r in rows.tolist()], dtype=str),
        }
        if result.layout is not None:
            arrays["layout"] = result.layout[rows]
        name = f"block-{self._blocks:06d}.npz"
        tmp = self.folder / (name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / name)
        self._blocks += 1

    def remove(self) -> None:
        """Delete the checkpoint (the output is complete, or the checkpoint is not this run's)."""
        shutil.rmtree(self.folder, ignore_errors=True)
