"""WebDataset tar shards as input: every image in the shards is a row, read without unpacking.

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
so decoding streams from the tar and nothing is unpacked to disk.
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
           "read_member"]

PREFIX = "tar://"
_BRACE = re.compile(r"\{([^{}]*)\}")


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
    """Whether an input names tar shards (a ``.tar`` file, or a brace pattern of them)."""
    s = os.fspath(path)
    return s.lower().endswith(".tar") and (_BRACE.search(s) is not None or os.path.isfile(s))


def member_address(shard: str | os.PathLike, member: str) -> str:
    """The resolved path of one member: ``tar://<absolute shard path>#<member>``."""
    return f"{PREFIX}{os.path.abspath(os.fspath(shard))}#{member}"


def is_member_address(path: str) -> bool:
    return path.startswith(PREFIX)


def file_of(path: str) -> str:
    """The file on disk that holds ``path``: its shard for a member address, else itself."""
    return _split(path)[0] if is_member_address(path) else path


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
        with tarfile.open(shard, "r:") as tf:  # headers only: member data is skipped by seeking
            for info in tf:
                if info.isfile():
                    index[info.name] = (info.offset_data, info.size)
        with self.lock:
            self.items[shard] = index
            while len(self.items) > self.keep:
                self.items.popitem(last=False)
        return index


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
    shard, member = _split(address)
    index = _INDEXES.get(shard)
    if member not in index:
        raise FileNotFoundError(f"{member} is not in {shard}")
    offset, size = index[member]
    fd = os.open(shard, os.O_RDONLY)
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if len(data) != size:
        raise EOFError(f"{shard} ends inside {member}")
    return data


def load_shards(spec: str | os.PathLike):
    """The :class:`dupscope.annotations.ImageTable` of a shard file or brace pattern (see the
    module docstring)."""
    from .annotations import ImageTable
    from .images import IMAGE_EXTENSIONS

    spec = os.path.expanduser(os.fspath(spec))
    shards = expand_shards(spec)
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        raise AnnotationError(f"{len(missing)} of {len(shards)} shards do not exist (e.g. {missing[0]})")
    paths, resolved, labels = [], [], []
    for shard in shards:
        try:
            with tarfile.open(shard, "r:") as tf:
                samples: OrderedDict = OrderedDict()
                for info in tf:
                    if not info.isfile():
                        continue
                    folder, _, base = info.name.rpartition("/")
                    key = (folder + "/" if folder else "") + base.split(".", 1)[0]
                    ext = base.split(".", 1)[1].lower() if "." in base else ""
                    s = samples.setdefault(key, {})
                    if ext.rsplit(".", 1)[-1] in {e.lstrip(".") for e in IMAGE_EXTENSIONS} and "image" not in s:
                        s["image"] = info.name
                    elif ext == "cls" and info.size <= 4096:
                        s["cls"] = tf.extractfile(info).read().decode("utf-8", "replace").strip()
        except tarfile.TarError as exc:
            raise AnnotationError(f"{shard} is not a readable tar shard ({exc})") from None
        name = Path(shard).name
        for key, s in samples.items():
            if "image" not in s:
                continue
            paths.append(f"{name}/{s['image']}")
            resolved.append(member_address(shard, s["image"]))
            labels.append(s.get("cls", ""))
    if not paths:
        raise AnnotationError(f"{spec}: the shards hold no images")
    return ImageTable(paths=paths, resolved=resolved, labels=labels, splits=[""] * len(paths),
                      source=os.path.abspath(spec), format="webdataset")
