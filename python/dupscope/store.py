"""The HDF5 file: the one place that writes and reads it (schema in docs/SCHEMA.md).

A file is written under ``<path>.partial`` and renamed to ``<path>`` only after everything is
in it and the root attribute ``complete`` is True, so a run killed half-way never leaves a
file that reads as finished.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import h5py
import numpy as np

from ._version import __version__
from .engine import DEFAULT_K, Progress, SimilarityJob

SCHEMA_VERSION = 1
METRIC = "(1+cos)/2"


class IncompleteFileError(OSError):
    """The file is missing its completion mark: it was not finished (killed or failed run)."""


def partial_path(path: "os.PathLike[str] | str") -> Path:
    """Where a file is written until it is complete."""
    p = Path(path)
    return p.with_name(p.name + ".partial")


def _disk_error(exc: BaseException) -> bool:
    text = str(exc)
    no = getattr(exc, "errno", None)
    return no in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or any(
        s in text for s in ("No space left", "File too large", "errno = 28", "errno = 27")
    )


def _strings(values: Sequence[str]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


class SimilarityWriter:
    """Writes one dupscope HDF5 file; use as a context manager.

    Parameters
    ----------
    path : path-like
        The final file name. Data goes to ``<path>.partial`` first.
    overwrite : bool
        Replace an existing file at ``path`` (only once the new one is complete).

    Examples
    --------
    >>> with SimilarityWriter("sim.h5") as w:                          # doctest: +SKIP
    ...     w.write_similarity(embeddings, k=32, dense=True)
    """

    def __init__(self, path: "os.PathLike[str] | str", overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists: choose another output or allow overwriting "
                "(overwrite=True)"
            )
        if not self.path.parent.exists():
            raise FileNotFoundError(f"folder {self.path.parent} does not exist")
        self.tmp = partial_path(self.path)
        self.h5 = h5py.File(self.tmp, "w")
        self.attrs = self.h5.attrs
        self.attrs["complete"] = False
        self.attrs["schema_version"] = SCHEMA_VERSION
        self.attrs["dupscope_version"] = __version__
        self.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.attrs["metric"] = METRIC
        self._closed = False

    # -- context management ------------------------------------------------------------------
    def __enter__(self) -> "SimilarityWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def commit(self) -> Path:
        """Mark the file complete, close it and move it to its final name."""
        if self._closed:
            return self.path
        self.attrs["complete"] = True
        self.h5.flush()
        self.h5.close()
        self._closed = True
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        if self._closed:
            return
        try:
            self.h5.close()
        except Exception:  # noqa: BLE001 - e.g. the disk is full; the file goes anyway
            pass
        self._closed = True
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass

    # -- content -----------------------------------------------------------------------------
    def write_images(
        self,
        paths: Sequence[str],
        resolved: Optional[Sequence[str]] = None,
        labels: Optional[Sequence[str]] = None,
        splits: Optional[Sequence[str]] = None,
        ok: Optional[Sequence[bool]] = None,
        errors: Optional[Sequence[str]] = None,
        widths: Optional[Sequence[int]] = None,
        heights: Optional[Sequence[int]] = None,
    ) -> None:
        """Write the ``images/`` group: one entry per image, in annotation order."""
        n = len(paths)
        g = self.h5.require_group("images")
        text = h5py.string_dtype("utf-8")
        columns = {
            "path": paths,
            "resolved_path": resolved if resolved is not None else paths,
            "label": labels if labels is not None else [""] * n,
            "split": splits if splits is not None else [""] * n,
            "error": errors if errors is not None else [""] * n,
        }
        for name, values in columns.items():
            if len(values) != n:
                raise ValueError(f"images/{name} has {len(values)} entries, expected {n}")
            g.create_dataset(name, data=_strings(values), dtype=text)
        g.create_dataset("ok", data=np.ones(n, bool) if ok is None else np.asarray(ok, bool))
        for name, values in (("width", widths), ("height", heights)):
            data = np.zeros(n, np.int32) if values is None else np.asarray(values, np.int32)
            g.create_dataset(name, data=data)
        self.attrs["n_images"] = n

    def write_embeddings(self, embeddings: np.ndarray) -> None:
        """Keep the embeddings (float16) so similarity can be recomputed without decoding."""
        e = np.asarray(embeddings)
        self.h5.create_dataset("embeddings", data=e.astype(np.float16),
                               chunks=(min(len(e), 4096), e.shape[1]) if len(e) else None)

    def write_similarity(
        self,
        embeddings: np.ndarray,
        k: int = DEFAULT_K,
        dense: bool = True,
        tile: Optional[int] = None,
        device: str = "auto",
        valid: Optional[np.ndarray] = None,
        threads: Optional[int] = None,
        progress: Progress = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the engine and write ``similarity`` (when ``dense``) and ``neighbors/``; returns
        the neighbour lists written (index, similarity).

        Chunks are written whole with HDF5's direct chunk write as the engine's worker threads
        finish them, so computing and writing overlap and memory stays at a few tiles.
        """
        job = SimilarityJob(embeddings, k=k, tile=tile, device=device, valid=valid,
                            threads=threads, output="chunks" if dense else "none")
        n, t = job.n, job.tile
        self.attrs.update({"n_images": n, "k": job.k, "tile": t, "dense": bool(dense),
                           "device": job.device})
        if dense:
            needed = ((n + t - 1) // t) ** 2 * t * t * 2
            free = shutil.disk_usage(self.tmp.parent).free
            if needed > free:
                raise OSError(
                    errno.ENOSPC,
                    f"not enough disk space for the dense {n} x {n} matrix in {self.path}: "
                    f"needs {needed / 1e9:.2f} GB, {free / 1e9:.2f} GB free. Free space, "
                    "write elsewhere, or write neighbours only (dense=False / --no-dense)",
                )
            dset = self.h5.create_dataset("similarity", shape=(n, n), dtype=np.float16,
                                          chunks=(t, t), fillvalue=np.float16(np.nan),
                                          # h5py refuses a chunk larger than a fixed shape
                                          maxshape=(n, n) if t <= n else (None, None))
            job.start()
            try:
                for bi, bj, chunk in job.chunks(progress):
                    dset.id.write_direct_chunk((bi * t, bj * t), chunk.data)
            except (OSError, RuntimeError) as exc:
                if _disk_error(exc):
                    raise OSError(
                        errno.ENOSPC,
                        f"ran out of disk space while writing {self.path} "
                        f"(the dense matrix needs {needed / 1e9:.2f} GB): free space, write "
                        "elsewhere, or write neighbours only (dense=False / --no-dense)",
                    ) from exc
                raise
        else:
            job.start()
        job.wait(progress)
        index, sim = job.topk()
        g = self.h5.require_group("neighbors")
        g.create_dataset("index", data=index)
        g.create_dataset("similarity", data=sim)
        return index, sim


    def write_scores(self, scored) -> None:
        """Replace ``neighbors/`` with lists ranked by the final score
        (:class:`dupscope.scoring.ScoredNeighbors`): ``index`` and ``similarity`` (the final
        score), plus ``embedding_similarity``, ``inliers`` and ``mirrored``."""
        g = self.h5.require_group("neighbors")
        for name, data in (("index", scored.index), ("similarity", scored.score),
                           ("embedding_similarity", scored.embedding_similarity),
                           ("inliers", scored.inliers), ("mirrored", scored.mirrored)):
            if name in g:
                del g[name]
            g.create_dataset(name, data=data)


class SimilarityFile:
    """Read a finished dupscope HDF5 file.

    Raises
    ------
    FileNotFoundError
        If there is no file (the message says when only an unfinished ``.partial`` exists).
    IncompleteFileError
        If the file lacks its completion mark.
    """

    def __init__(self, path: "os.PathLike[str] | str") -> None:
        self.path = Path(path)
        if not self.path.exists():
            hint = ""
            if partial_path(self.path).exists():
                hint = f" (only the unfinished {partial_path(self.path).name} exists: the run " \
                       "that wrote it did not finish; run it again)"
            raise FileNotFoundError(f"{self.path} does not exist{hint}")
        self.h5 = h5py.File(self.path, "r")
        if not bool(self.h5.attrs.get("complete", False)):
            self.h5.close()
            raise IncompleteFileError(
                f"{self.path} is not a complete dupscope file (no completion mark): it was "
                "written by a run that did not finish; run it again"
            )
        version = int(self.h5.attrs.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            self.h5.close()
            raise OSError(f"{self.path} has schema version {version}; this dupscope reads up to "
                          f"{SCHEMA_VERSION}: upgrade dupscope")

    def __enter__(self) -> "SimilarityFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.h5.close()

    @property
    def attrs(self) -> dict[str, Any]:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self.h5.attrs.items()}

    @property
    def n(self) -> int:
        return int(self.h5.attrs["n_images"])

    def _text(self, name: str) -> list[str]:
        if "images" not in self.h5 or name not in self.h5["images"]:
            return [""] * self.n
        return [s.decode() if isinstance(s, bytes) else str(s)
                for s in self.h5["images"][name][()]]

    @property
    def paths(self) -> list[str]:
        if "images" not in self.h5:
            return [str(i) for i in range(self.n)]
        return self._text("path")

    @property
    def resolved_paths(self) -> list[str]:
        return self._text("resolved_path") if "images" in self.h5 else self.paths

    @property
    def labels(self) -> list[str]:
        return self._text("label")

    @property
    def splits(self) -> list[str]:
        return self._text("split")

    @property
    def errors(self) -> list[str]:
        return self._text("error")

    @property
    def ok(self) -> np.ndarray:
        if "images" in self.h5 and "ok" in self.h5["images"]:
            return self.h5["images/ok"][()].astype(bool)
        return np.ones(self.n, bool)

    @property
    def similarity(self) -> Optional[h5py.Dataset]:
        """The dense (N, N) float16 dataset, or None when only neighbours were written."""
        return self.h5["similarity"] if "similarity" in self.h5 else None

    @property
    def embeddings(self) -> Optional[h5py.Dataset]:
        return self.h5["embeddings"] if "embeddings" in self.h5 else None

    def neighbors(self) -> Tuple[np.ndarray, np.ndarray]:
        """(index int32 (N, k), similarity float16 (N, k)), most similar first: the final score
        where the file was verified (``attrs["score"] == "verified"``), else the engine's
        similarity."""
        return self.h5["neighbors/index"][()], self.h5["neighbors/similarity"][()]

    @property
    def verified(self) -> bool:
        """Whether the neighbour pairs were geometrically verified (``neighbors/inliers`` exists)."""
        return "neighbors/inliers" in self.h5

    def inliers(self) -> Optional[np.ndarray]:
        """(N, k) int16 inliers of each neighbour pair, ``-1`` where not checked; None when the
        file was written without verification."""
        return self.h5["neighbors/inliers"][()] if self.verified else None
