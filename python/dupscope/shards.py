"""Sharded inputs: WebDataset tar shards and Parquet files, every image a row, read in place.

``dupscope similarity 'shards/train-{00000..00099}.tar' -o sim.h5`` takes a shard file, or a
brace pattern of them (``{00000..00099}`` ranges keep their zero padding, ``{a,b}`` lists),
in the order given. A shard's members are grouped by WebDataset's *key* (the member name up to
the first dot of its last part: ``00042.jpg`` and ``00042.cls`` are one sample); a sample's image
is its first member with an image extension, and its label the text of a ``.cls`` member when
there is one (else ``""``).

A row's identity is its shard and key: ``images/path`` holds ``<shard file name>/<member>``, and
``images/resolved_path`` the address the image is read from, ``tar://<absolute shard path>#<member>``
(:func:`member_address`). Reading an image looks up the member's offset in the shard's index
(built once per shard by reading its headers) and reads just those bytes (:func:`read_member`),
so decoding streams from the tar and nothing is unpacked to disk. Shards may also be fsspec URLs
(``s3://bucket/shards/{000..099}.tar``, with fsspec and the filesystem's package installed):
they are read the same way, by seeking.

**Parquet** (``data/part-{0000..0009}.parquet``, pyarrow needed: ``pip install pyarrow``): one row
per table row. The image is a binary column (``image``, ``bytes``, ``jpg``, ``png``, ... or
``--path-column``), read in place: ``images/path`` is ``<file name>/<row>`` and the resolved
path ``parquet://<absolute file>#<row>:<column>`` (:func:`read_member` reads that row's row group,
the last few kept). A string column of paths (the CSV path columns) is read as paths instead,
relative to the file's folder. Label and split columns are those of CSV input.
"""

from __future__ import annotations

import os
import re
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path

from .errors import AnnotationError

__all__ = ["expand_shards", "is_shard_spec", "load_shards", "member_address", "is_member_address", "file_of",
           "read_member", "BYTES_COLUMNS"]

PREFIX = "tar://"
PARQUET = "parquet://"
#: Binary columns taken as the image, in this order, when no column is named.
BYTES_COLUMNS = ("image", "img", "bytes", "image_bytes", "jpg", "jpeg", "png", "webp", "content", "data")
_BRACE = re.compile(r"\{([^{}]*)\}")


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _is_url(path: str) -> bool:
    """An fsspec URL (``s3://``, ``gs://``, ``https://``, ``memory://``, ...), not a local path."""
    return bool(_URL.match(path)) and not path.startswith(("tar://", "parquet://"))


def _fs_open(path: str):
    """A readable, seekable binary file: local, or through fsspec for a URL."""
    if not _is_url(path):
        return open(path, "rb")
    try:
        import fsspec
    except ImportError:
        raise AnnotationError(f"reading {path} needs fsspec (and its filesystem): pip install fsspec") from None
    return fsspec.open(path, "rb").open()


def _exists(path: str) -> bool:
    if not _is_url(path):
        return os.path.isfile(path)
    try:
        import fsspec
    except ImportError:
        raise AnnotationError(f"reading {path} needs fsspec (and its filesystem): pip install fsspec") from None
    fs, _, (p,) = fsspec.get_fs_token_paths(path)
    return fs.isfile(p)


def _absolute(path: str) -> str:
    return path if _is_url(path) else os.path.abspath(path)


def expand_shards(spec: str) -> list[str]:
    """``a/{000..002}.tar`` -> ``a/000.tar a/001.tar a/002.tar``; ``{x,y}`` lists; several braces
    multiply out, left to right."""
    m = _BRACE.search(spec)
    if not m:
        return [spec]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        if int(hi) < int(lo):
            raise AnnotationError(f"{spec}: the range {{{body}}} counts down")
        if int(hi) - int(lo) > 10_000_000:
            raise AnnotationError(f"{spec}: the range {{{body}}} is too long")
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        items = [str(v).zfill(width) for v in range(int(lo), int(hi) + 1)]
    else:
        items = body.split(",")
    out = []
    for item in items:
        out.extend(expand_shards(spec[:m.start()] + item + spec[m.end():]))
    return out


def is_shard_spec(path: str | os.PathLike) -> bool:
    """Whether an input names tar shards or Parquet files (one, or a brace pattern of them)."""
    s = os.fspath(path)
    return s.lower().endswith((".tar", ".parquet")) and (_BRACE.search(s) is not None or _is_url(s)
                                                          or os.path.isfile(s))


def member_address(shard: str | os.PathLike, member: str) -> str:
    """The resolved path of one member: ``tar://<absolute shard path>#<member>``."""
    return f"{PREFIX}{_absolute(os.fspath(shard))}#{member}"


def is_member_address(path: str) -> bool:
    return path.startswith((PREFIX, PARQUET))


def file_of(path: str) -> str:
    """The file on disk that holds ``path``: its shard for a member address, else itself."""
    if path.startswith(PARQUET):
        return _split_parquet(path)[0]
    return _split(path)[0] if is_member_address(path) else path


def _split_parquet(address: str) -> tuple[str, int, str]:
    body = address[len(PARQUET):]
    cut = body.rfind("#")
    row, _, column = body[cut + 1:].partition(":")
    return body[:cut], int(row), column


def _split(address: str) -> tuple[str, str]:
    body = address[len(PREFIX):]
    cut = body.find(".tar#")
    if cut < 0:
        raise FileNotFoundError(f"not a shard member address: {address}")
    return body[:cut + 4], body[cut + 5:]


class _Indexes:
    """Per shard: member name -> (offset of its data, size), built once from the headers; the
    last few shards kept."""

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self.lock = threading.Lock()
        self.items: OrderedDict = OrderedDict()

    def get(self, shard: str) -> dict:
        with self.lock:
            hit = self.items.get(shard)
            if hit is not None:
                self.items.move_to_end(shard)
                return hit
        index = {}
        with _fs_open(shard) as fh, tarfile.open(fileobj=fh, mode="r:") as tf:  # headers only: data is seeked over
            for info in tf:
                if info.isfile():
                    index[info.name] = (info.offset_data, info.size)
        self.put(shard, index)
        return index

    def put(self, shard: str, index: dict) -> None:
        with self.lock:
            self.items[shard] = index
            self.items.move_to_end(shard)
            while len(self.items) > self.keep:
                self.items.popitem(last=False)


_INDEXES = _Indexes()


def read_member(address: str) -> bytes:
    """The bytes of the member a :func:`member_address` names.

    Raises
    ------
    FileNotFoundError
        The shard or the member does not exist.
    tarfile.ReadError
        The shard is not a readable tar file.
    """
    if address.startswith(PARQUET):
        return _parquet_cell(*_split_parquet(address))
    shard, member = _split(address)
    index = _INDEXES.get(shard)
    if member not in index:
        raise FileNotFoundError(f"{member} is not in {shard}")
    offset, size = index[member]
    if _is_url(shard):
        with _fs_open(shard) as fh:
            fh.seek(offset)
            data = fh.read(size)
    else:
        fd = os.open(shard, os.O_RDONLY)
        try:
            data = os.pread(fd, size, offset)
        finally:
            os.close(fd)
    if len(data) != size:
        raise EOFError(f"{shard} ends inside {member}")
    return data


class _RowGroups:
    """The last few row groups' image columns read from Parquet files, as Python bytes lists,
    with each file's row-group start rows."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.lock = threading.Lock()
        self.items: OrderedDict = OrderedDict()
        self.starts: dict = {}

    def cell(self, path: str, row: int, column: str) -> bytes:
        pq = _pyarrow()
        with self.lock:
            starts = self.starts.get(path)
        if starts is None:
            with _fs_open(path) as fh:
                meta = pq.ParquetFile(fh).metadata
            starts = [0]
            for g in range(meta.num_row_groups):
                starts.append(starts[-1] + meta.row_group(g).num_rows)
            with self.lock:
                self.starts[path] = starts
        import bisect

        g = bisect.bisect_right(starts, row) - 1
        if not 0 <= g < len(starts) - 1:
            raise FileNotFoundError(f"row {row} is not in {path}")
        key = (path, g, column)
        with self.lock:
            values = self.items.get(key)
            if values is not None:
                self.items.move_to_end(key)
        if values is None:
            with _fs_open(path) as fh:
                values = pq.ParquetFile(fh).read_row_group(g, columns=[column]).column(0).to_pylist()
            with self.lock:
                self.items[key] = values
                while len(self.items) > self.keep:
                    self.items.popitem(last=False)
        value = values[row - starts[g]]
        if value is None:
            raise FileNotFoundError(f"row {row} of {path} has no image")
        return bytes(value)


_ROW_GROUPS = _RowGroups()


def _parquet_cell(path: str, row: int, column: str) -> bytes:
    return _ROW_GROUPS.cell(path, row, column)


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AnnotationError("Parquet input needs pyarrow: pip install pyarrow") from None
    return pq


def _load_parquet(files: list[str], spec: str, path_column, label_column, split_column):
    from .annotations import LABEL_COLUMNS, PATH_COLUMNS, SPLIT_COLUMNS, ImageTable, _normalise_split

    pq = _pyarrow()
    import pyarrow as pa

    def binary(t):
        return pa.types.is_binary(t) or pa.types.is_large_binary(t)

    def text(t):
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    paths, resolved, labels, splits = [], [], [], []
    for file in files:
        with _fs_open(file) as fh:  # one open per file: the schema, then the small columns
            try:
                pf = pq.ParquetFile(fh)
                schema = pf.schema_arrow
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
                raise AnnotationError(f"{file} is not a readable Parquet file ({exc})") from None
            names = {n.lower(): n for n in schema.names}

            def pick(wanted, candidates, kind=None):
                if wanted is not None:
                    if wanted not in schema.names:
                        raise AnnotationError(f"{file}: no column {wanted!r} (columns: {', '.join(schema.names)})")
                    return wanted
                for c in candidates:
                    if c in names and (kind is None or kind(schema.field(names[c]).type)):
                        return names[c]
                return None

            col = path_col = None
            if path_column is not None:
                kind = schema.field(pick(path_column, ())).type
                if binary(kind):
                    col = path_column
                elif text(kind):
                    path_col = path_column
                else:
                    raise AnnotationError(f"{file}: column {path_column!r} holds neither image bytes nor paths ({kind})")
            else:
                col = pick(None, BYTES_COLUMNS, binary)
                path_col = None if col is not None else pick(None, PATH_COLUMNS, text)
            if col is None and path_col is None:
                raise AnnotationError(f"{file}: no image column (bytes: {', '.join(BYTES_COLUMNS)}; or paths: "
                                      f"{', '.join(PATH_COLUMNS)}); name it with --path-column")
            lab, spl = pick(label_column, LABEL_COLUMNS), pick(split_column, SPLIT_COLUMNS)
            n = pf.metadata.num_rows
            table = pf.read(columns=[c for c in (path_col, lab, spl) if c])
        name = file.rstrip("/").rsplit("/", 1)[-1]
        base = None if _is_url(file) else Path(file).parent  # paths listed in a remote file are used as written
        if col is not None:
            paths += [f"{name}/{r}" for r in range(n)]
            resolved += [f"{PARQUET}{_absolute(file)}#{r}:{col}" for r in range(n)]
        else:
            values = ["" if v is None else str(v) for v in table.column(path_col).to_pylist()]
            paths += values
            resolved += [str(base / v) if base is not None and v and not os.path.isabs(v) else v for v in values]
        labels += ["" if v is None else str(v) for v in table.column(lab).to_pylist()] if lab else [""] * n
        splits += [_normalise_split(v) for v in table.column(spl).to_pylist()] if spl else [""] * n
    if not paths:
        raise AnnotationError(f"{spec}: the Parquet files hold no rows")
    return ImageTable(paths=paths, resolved=resolved, labels=labels, splits=splits,
                      source=_absolute(spec), format="parquet")


def load_shards(spec: str | os.PathLike, *, path_column=None, label_column=None, split_column=None):
    """The :class:`dupscope.annotations.ImageTable` of a shard file or brace pattern, tar or
    Parquet (see the module docstring)."""
    from .annotations import ImageTable
    from .images import IMAGE_EXTENSIONS

    spec = os.fspath(spec)
    spec = spec if _is_url(spec) else os.path.expanduser(spec)
    shards = expand_shards(spec)
    missing = [s for s in shards if not _exists(s)]
    if missing:
        raise AnnotationError(f"{len(missing)} of {len(shards)} shards do not exist (e.g. {missing[0]})")
    if spec.lower().endswith(".parquet"):
        return _load_parquet(shards, spec, path_column, label_column, split_column)
    image_ext = {e.lstrip(".") for e in IMAGE_EXTENSIONS}
    paths, resolved, labels = [], [], []
    for shard in shards:
        index = {}  # the member offsets, kept for reading the images later (one pass over the headers)
        try:
            with _fs_open(shard) as fh, tarfile.open(fileobj=fh, mode="r:") as tf:
                samples: OrderedDict = OrderedDict()
                for info in tf:
                    if not info.isfile():
                        continue
                    index[info.name] = (info.offset_data, info.size)
                    folder, _, base = info.name.rpartition("/")
                    key = (folder + "/" if folder else "") + base.split(".", 1)[0]
                    ext = base.split(".", 1)[1].lower() if "." in base else ""
                    s = samples.setdefault(key, {})
                    if ext.rsplit(".", 1)[-1] in image_ext and "image" not in s:
                        s["image"] = info.name
                    elif ext == "cls" and info.size <= 4096:
                        s["cls"] = tf.extractfile(info).read().decode("utf-8", "replace").strip()
        except tarfile.TarError as exc:
            raise AnnotationError(f"{shard} is not a readable tar shard ({exc})") from None
        _INDEXES.put(_absolute(shard), index)
        name = shard.rstrip("/").rsplit("/", 1)[-1]
        for key, s in samples.items():
            if "image" not in s:
                continue
            paths.append(f"{name}/{s['image']}")
            resolved.append(member_address(shard, s["image"]))
            labels.append(s.get("cls", ""))
    if not paths:
        raise AnnotationError(f"{spec}: the shards hold no images")
    return ImageTable(paths=paths, resolved=resolved, labels=labels, splits=[""] * len(paths),
                      source=_absolute(spec), format="webdataset")
