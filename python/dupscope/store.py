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
from .engine import DEFAULT_K, Progress, SimilarityJob, resolve_device, resolve_precision
from .errors import IncompleteFileError, OutputBusyError, OutputError, SimilarityFileError

SCHEMA_VERSION = 2
METRIC = "(1+cos)/2"


def partial_path(path: "os.PathLike[str] | str") -> Path:
    """Where a file is written until it is complete."""
    p = Path(path)
    return p.with_name(p.name + ".partial")


def lock_path(path: "os.PathLike[str] | str") -> Path:
    """The lock file that guards writing ``path`` (and its ``.partial``)."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


class OutputLock:
    """An exclusive lock on ``<output>.lock``, taken before anything of the output is opened, so
    that a second run writing the same output refuses at once instead of truncating the first
    run's ``.partial``. Released (and the lock file removed) by :meth:`release`; the operating
    system releases it when the process dies, so a killed run never leaves a stale lock.

    Raises
    ------
    dupscope.errors.OutputBusyError
        Another process holds the lock.
    dupscope.errors.OutputError
        The lock file cannot be created (e.g. the folder is not writable).
    """

    def __init__(self, path: "os.PathLike[str] | str") -> None:
        self.output = Path(path)
        self.path = lock_path(path)
        self._fd: Optional[int] = None
        self._acquire()

    def _acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: an exclusive create instead
            fcntl = None
        for _ in range(10):
            try:
                flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if fcntl is None else 0)
                fd = os.open(self.path, flags, 0o644)
            except FileExistsError:
                raise self._busy() from None
            except OSError as exc:
                raise OutputError(f"cannot write {self.output}: cannot create {self.path.name} in "
                                  f"{self.path.parent} ({exc.strerror or exc})") from None
            if fcntl is None:  # pragma: no cover
                self._fd = fd
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._busy() from None
            # The holder before us may have removed the file between our open and our lock:
            # then we hold a lock on a name nobody sees, so start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)
        raise self._busy()

    def _busy(self) -> OutputBusyError:
        return OutputBusyError(
            f"another run is writing {partial_path(self.output)} (it holds {self.path.name}): wait for it to "
            "finish, or choose another output")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked, so no one else can be holding it
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_output(path: "os.PathLike[str] | str", *, overwrite: bool) -> Path:
    """Check, before any work, that a similarity file can be written at ``path``.

    Raises
    ------
    dupscope.errors.OutputError
        ``path`` is a folder, its folder does not exist or is not writable, or it exists and
        ``overwrite`` is False.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder; give a file name such as {p / 'similarity.h5'}")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {p}: folder {parent} is not writable")
    if p.exists() and not overwrite:
        raise OutputError(f"{p} already exists: choose another output or allow overwriting")
    if partial_path(p).is_dir():
        raise OutputError(f"cannot write {p}: {partial_path(p)} is a folder")
    return p


def _disk_error(exc: BaseException) -> bool:
    text = str(exc)
    no = getattr(exc, "errno", None)
    return no in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or any(
        s in text for s in ("No space left", "File too large", "errno = 28", "errno = 27")
    )


def _strings(values: Sequence[str]) -> np.ndarray:
    """Text for a UTF-8 string dataset, as bytes: a name that was not valid UTF-8 (decoded with
    surrogate escapes, as Python does for such file names) is stored as its original bytes, so
    nothing is lost; :func:`decode_name` turns it back into the same str."""
    return np.array([str(v).encode("utf-8", "surrogateescape") for v in values], dtype=object)


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

    def __init__(self, path: "os.PathLike[str] | str", overwrite: bool = False,
                 lock: Optional[OutputLock] = None) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists: choose another output or allow overwriting "
                "(overwrite=True)"
            )
        if not self.path.parent.exists():
            raise FileNotFoundError(f"folder {self.path.parent} does not exist")
        if self.path.is_dir():
            raise OutputError(f"cannot write {self.path}: it is a folder")
        # The lock first: a second writer must not touch the first one's .partial.
        self._own_lock = lock is None
        self.lock = OutputLock(self.path) if lock is None else lock
        self.tmp = partial_path(self.path)
        try:
            self.h5 = h5py.File(self.tmp, "w")
        except BaseException:
            if self._own_lock:
                self.lock.release()
            raise
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
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            # Never leave a file marked complete under a name that says it is not: take the
            # mark off again and say where the data is.
            try:
                with h5py.File(self.tmp, "r+") as h5:
                    h5.attrs["complete"] = False
            except OSError:
                pass
            raise OutputError(f"cannot move {self.tmp} to {self.path} ({exc.strerror or exc}); the data "
                              f"is in {self.tmp}, marked incomplete") from None
        finally:
            if self._own_lock:
                self.lock.release()
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
        finally:
            if self._own_lock:
                self.lock.release()

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

    def write_embeddings(self, embeddings: np.ndarray, name: str = "embeddings") -> None:
        """Keep embeddings (float16) so similarity can be recomputed, or rows added, without
        decoding: ``embeddings`` (what the engine compared) or ``embeddings_raw`` (a fused
        model's raw output)."""
        self.write_array(name, np.asarray(embeddings).astype(np.float16, copy=False))

    def write_array(self, name: str, data: np.ndarray) -> None:
        """One dataset (replacing any of that name), chunked by blocks of rows when 2-D."""
        data = np.asarray(data)
        if name in self.h5:
            del self.h5[name]
        chunks = (max(1, min(len(data), 4096)),) + data.shape[1:] if data.ndim == 2 and data.size else None
        self.h5.create_dataset(name, data=data, chunks=chunks)

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
        neighbours: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the engine and write ``similarity`` (when ``dense``) and ``neighbors/``; returns
        the neighbour lists written (index, similarity).

        Chunks are written whole with HDF5's direct chunk write as the engine's worker threads
        finish them, so computing and writing overlap and memory stays at a few tiles.
        ``neighbours`` (index int32, similarity float16), computed elsewhere (the Ray backend's
        :func:`dupscope.cluster.topk`), are written instead of running the engine (not dense).
        """
        if neighbours is not None:
            if dense:
                raise ValueError("precomputed neighbours are written without a dense matrix")
            from .engine import effective_tile

            index, sim = np.asarray(neighbours[0], np.int32), np.asarray(neighbours[1], np.float16)
            n = len(embeddings)
            self.attrs.update({"n_images": n, "k": int(index.shape[1]), "dense": False, "device": str(device),
                               "tile": effective_tile(n, tile, "cpu")})
            g = self.h5.require_group("neighbors")
            g.create_dataset("index", data=index)
            g.create_dataset("similarity", data=sim)
            return index, sim
        # Lists alone: bf16 candidate tiles where the CPU runs them natively and the rows are
        # narrow enough (the lists equal float32's exactly, dupscope.engine.topk; at 100,000 x 320
        # 1.4x faster with AVX512_BF16 on an AMD EPYC, 1.67x with AMX on a Sapphire Rapids VM).
        precision = "fp32" if dense else resolve_precision("auto", resolve_device(device), np.shape(embeddings)[1])
        job = SimilarityJob(embeddings, k=k, tile=tile, device=device, valid=valid,
                            threads=threads, output="chunks" if dense else "none", precision=precision)
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
        score), plus ``embedding_similarity``, ``inliers``, ``mirrored`` and ``coverage``; and
        ``verified/`` with every pair checked."""
        for name, data in (("index", scored.index), ("similarity", scored.score),
                           ("embedding_similarity", scored.embedding_similarity),
                           ("inliers", scored.inliers), ("mirrored", scored.mirrored),
                           ("coverage", scored.coverage)):
            if data is not None:
                self.write_array(f"neighbors/{name}", data)
        if scored.pairs is not None:
            v = scored.pairs
            for name, data in (("a", v.a), ("b", v.b), ("inliers", v.inliers), ("coverage", v.coverage),
                               ("mirrored", v.mirrored)):
                self.write_array(f"verified/{name}", data)


class SimilarityFile:
    """Read a finished dupscope HDF5 file: the one reader of the format (docs/SCHEMA.md).

    Every accessor checks what it reads (present, of the right kind and shape) and raises
    :class:`dupscope.errors.SimilarityFileError` naming the file and the dataset otherwise, so
    that a damaged or foreign file gives one clear message rather than an h5py traceback.

    Raises
    ------
    FileNotFoundError
        If there is no file (the message says when only an unfinished ``.partial`` exists).
    IncompleteFileError
        If the file lacks its completion mark (root attribute ``complete`` must be the boolean
        True; the string ``"True"`` does not count).
    SimilarityFileError
        If the path is a folder, not an HDF5 file, truncated, or of a newer schema version.
    """

    def __init__(self, path: "os.PathLike[str] | str") -> None:
        self.path = Path(path)
        if not self.path.exists():
            hint = ""
            if partial_path(self.path).exists():
                hint = f" (only the unfinished {partial_path(self.path).name} exists: the run " \
                       "that wrote it did not finish; run it again)"
            raise FileNotFoundError(f"{self.path} does not exist{hint}")
        if self.path.is_dir():
            raise SimilarityFileError(f"{self.path} is a folder, not a similarity file")
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise SimilarityFileError(
                f"{self.path} is not a readable HDF5 file ({_first_line(exc)}): is it a file written by "
                "`dupscope similarity`, and was it copied completely?") from None
        complete = self.h5.attrs.get("complete", False)
        if not (isinstance(complete, (bool, np.bool_)) and bool(complete)):
            self.h5.close()
            raise IncompleteFileError(
                f"{self.path} is not a complete dupscope file (root attribute 'complete' is {complete!r}, "
                "not True): it was written by a run that did not finish; run it again"
            )
        raw_version = self.h5.attrs.get("schema_version", 0)
        try:
            version = int(raw_version)
        except (TypeError, ValueError):
            version = -1
        if version > SCHEMA_VERSION or version < 0:
            self.h5.close()
            raise SimilarityFileError(
                f"{self.path} has schema version {raw_version!r}; this dupscope reads versions up to "
                f"{SCHEMA_VERSION}: upgrade dupscope")

    def __enter__(self) -> "SimilarityFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.h5.close()

    # -- checked access ----------------------------------------------------------------------
    def _bad(self, what: str) -> SimilarityFileError:
        return SimilarityFileError(f"{self.path}: {what}; the file is damaged or was not written by dupscope")

    def _dataset(self, name: str, kinds: str, ndim: int, *, required: bool = True):
        """The dataset ``name`` after checking its kind (numpy dtype kinds) and rank; None when
        absent and not required."""
        try:
            ds = self.h5.get(name)
        except (KeyError, OSError, RuntimeError) as exc:
            raise self._bad(f"dataset '{name}' cannot be read ({_first_line(exc)})") from None
        if ds is None:
            if required:
                raise self._bad(f"dataset '{name}' is missing")
            return None
        if not isinstance(ds, h5py.Dataset):
            raise self._bad(f"'{name}' is not a dataset")
        if ds.dtype.kind not in kinds or ds.ndim != ndim:
            raise self._bad(f"dataset '{name}' is {ds.dtype} with {ds.ndim} dimensions, expected "
                            f"{ndim}-D of kind {'/'.join(kinds)}")
        return ds

    def _read(self, ds) -> np.ndarray:
        try:
            return ds[()]
        except (OSError, RuntimeError, ValueError) as exc:
            raise self._bad(f"dataset '{ds.name.lstrip('/')}' cannot be read ({_first_line(exc)})") from None

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes, numpy scalars as Python values and bytes decoded."""
        out = {}
        for k, v in self.h5.attrs.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            out[k] = v
        return out

    @property
    def n(self) -> int:
        """Number of images: the ``n_images`` attribute, else the length of ``images/path``."""
        v = self.h5.attrs.get("n_images")
        if v is not None:
            try:
                return int(v)
            except (TypeError, ValueError):
                raise self._bad(f"attribute 'n_images' is {v!r}") from None
        ds = self._dataset("images/path", "SOU", 1, required=False)
        if ds is None:
            ds = self._dataset("neighbors/index", "iu", 2)
        return int(ds.shape[0])

    def _text(self, name: str) -> list[str]:
        ds = self._dataset(f"images/{name}", "SOU", 1, required=False)
        if ds is None:
            return [""] * self.n
        if ds.shape[0] != self.n:
            raise self._bad(f"images/{name} has {ds.shape[0]} entries for {self.n} images")
        return [decode_name(v) for v in self._read(ds)]

    @property
    def has_paths(self) -> bool:
        """Whether the file names its images (``images/path``); files written by
        :func:`write_similarity` from embeddings alone do not."""
        return "images" in self.h5 and "path" in self.h5["images"]

    @property
    def paths(self) -> list[str]:
        """Image paths as given in the annotations (names that were not valid UTF-8 come back
        with their bytes as surrogate escapes, see docs/SCHEMA.md); row numbers as text when
        the file has no paths."""
        if not self.has_paths:
            return [str(i) for i in range(self.n)]
        return self._text("path")

    @property
    def resolved_paths(self) -> list[str]:
        if not self.has_paths or "resolved_path" not in self.h5["images"]:
            return self.paths
        return self._text("resolved_path")

    @property
    def labels(self) -> list[str]:
        return self._text("label")

    @property
    def splits(self) -> list[str]:
        return self._text("split")

    @property
    def errors(self) -> list[str]:
        return self._text("error")

    def _per_image(self, name: str, kinds: str, dtype, default) -> np.ndarray:
        ds = self._dataset(f"images/{name}", kinds, 1, required=False)
        if ds is None:
            return np.full(self.n, default, dtype)
        if ds.shape[0] != self.n:
            raise self._bad(f"images/{name} has {ds.shape[0]} entries for {self.n} images")
        return self._read(ds).astype(dtype)

    @property
    def ok(self) -> np.ndarray:
        return self._per_image("ok", "biu", bool, True)

    @property
    def widths(self) -> np.ndarray:
        """(N,) int32 full-resolution widths, 0 where unknown."""
        return self._per_image("width", "iu", np.int32, 0)

    @property
    def heights(self) -> np.ndarray:
        """(N,) int32 full-resolution heights, 0 where unknown."""
        return self._per_image("height", "iu", np.int32, 0)

    @property
    def similarity(self) -> Optional[h5py.Dataset]:
        """The dense (N, N) float16 dataset, or None when only neighbours were written."""
        ds = self._dataset("similarity", "f", 2, required=False)
        if ds is not None and ds.shape != (self.n, self.n):
            raise self._bad(f"similarity is {ds.shape} for {self.n} images")
        return ds

    @property
    def sets(self) -> Optional[list[str]]:
        """Per image ``"query"`` or ``"reference"`` in a reference run's file, else None."""
        if "images" not in self.h5 or "set" not in self.h5["images"]:
            return None
        values = self._text("set")
        if any(v not in ("query", "reference") for v in values):
            raise self._bad("images/set holds values other than query and reference")
        return values

    @property
    def embeddings(self) -> Optional[h5py.Dataset]:
        return self._dataset("embeddings", "f", 2, required=False)

    def has_neighbors(self) -> bool:
        """Whether the file holds neighbour lists (``neighbors/index``)."""
        return "neighbors" in self.h5 and "index" in self.h5["neighbors"]

    def _neighbor(self, name: str, kinds: str, *, required: bool = True) -> Optional[np.ndarray]:
        ds = self._dataset(f"neighbors/{name}", kinds, 2, required=required)
        if ds is None:
            return None
        if ds.shape[0] != self.n:
            raise self._bad(f"neighbors/{name} has {ds.shape[0]} rows for {self.n} images")
        return self._read(ds)

    def neighbors(self) -> Tuple[np.ndarray, np.ndarray]:
        """(index int32 (N, k), similarity float16 (N, k)), most similar first: the final score
        where the file was verified (``attrs["score"] == "verified"``), else the engine's
        similarity."""
        index = self._neighbor("index", "iu")
        sim = self._neighbor("similarity", "f")
        if index.shape != sim.shape:
            raise self._bad(f"neighbors/index {index.shape} and neighbors/similarity {sim.shape} differ")
        if index.size and (index.max() >= self.n or index.min() < -1):
            raise self._bad(f"neighbors/index names rows outside 0..{self.n - 1}")
        return index.astype(np.int32, copy=False), sim.astype(np.float16, copy=False)

    def top_similarity(self) -> np.ndarray:
        """(N,) float64 each image's best neighbour score (column 0 of the lists; NaN for none)."""
        index, sim = self.neighbors()
        if not index.shape[1]:
            return np.full(self.n, np.nan)
        return np.where(index[:, 0] >= 0, sim[:, 0].astype(np.float64), np.nan)

    @property
    def verified(self) -> bool:
        """Whether the neighbour pairs were geometrically verified (``neighbors/inliers`` exists)."""
        return "neighbors" in self.h5 and "inliers" in self.h5["neighbors"]

    def inliers(self) -> Optional[np.ndarray]:
        """(N, k) int16 inliers of each neighbour pair, ``-1`` where not checked; None when the
        file was written without verification."""
        return self._neighbor("inliers", "iu", required=False) if self.verified else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def printable(name: str) -> str:
    """``name`` for a terminal: bytes that were not valid UTF-8 shown as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def decode_name(v: Any) -> str:
    """A stored name as str: UTF-8, with bytes that are not valid UTF-8 as surrogate escapes
    (the convention of ``os.fsdecode``), so that the original bytes can be recovered with
    ``os.fsencode``."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    return str(v)


def write_similarity(
    embeddings: np.ndarray,
    path: "os.PathLike[str] | str",
    k: int = DEFAULT_K,
    dense: bool = True,
    tile: Optional[int] = None,
    device: str = "auto",
    *,
    valid: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    overwrite: bool = False,
    progress: Progress = None,
    attrs: Optional[dict[str, Any]] = None,
    paths: Optional[Sequence[str]] = None,
    labels: Optional[Sequence[str]] = None,
    splits: Optional[Sequence[str]] = None,
) -> "os.PathLike[str] | str":
    """Compute similarities and write them to an HDF5 file (see docs/SCHEMA.md).

    Writes ``similarity`` (N, N) float16 chunked (tile, tile) when ``dense``, and always
    ``neighbors/index`` and ``neighbors/similarity`` (N, k). Memory stays bounded by a few
    tiles plus the embeddings whatever N is; the file appears under ``path`` only once complete.

    ``paths`` (and optionally ``labels``, ``splits``), one per row of ``embeddings``, are written
    to ``images/`` so that ``dupscope visualize`` shows the images and ``dupscope export`` names
    them; without ``paths`` the explorer shows rows as "image 0", "image 1", ...
    """
    n = len(embeddings)
    for name, values in (("paths", paths), ("labels", labels), ("splits", splits)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries, embeddings have {n} rows")
    if paths is None and (labels is not None or splits is not None):
        raise ValueError("labels and splits need paths (one per row of embeddings)")
    with SimilarityWriter(path, overwrite=overwrite) as w:
        if paths is not None:
            w.write_images([os.fspath(x) for x in paths], labels=labels, splits=splits,
                           ok=None if valid is None else np.asarray(valid, bool))
        w.write_similarity(embeddings, k=k, dense=dense, tile=tile, device=device, valid=valid,
                           threads=threads, progress=progress)
        if attrs:
            w.attrs.update(attrs)
    return path
