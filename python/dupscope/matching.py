"""Names given by a user (ground truth, prediction keys) matched to the rows of a similarity file.

One rule for every caller: a name matches, in this order,

1. a path exactly as written in the annotations (``images/path``);
2. an absolute path as the image was read (``images/resolved_path``);
3. the same path normalised (``./a/../b`` is ``b``; backslashes count as slashes);
4. the file name alone (the last component, either separator), when exactly one image has it;
   when several do, the name is *ambiguous* and the caller reports it.
"""

from __future__ import annotations

import posixpath
from typing import Optional, Sequence

__all__ = ["PathIndex", "AMBIGUOUS", "UNKNOWN", "normalise_path", "basename"]

#: Row returned for a name no image has, and for a file name several images share.
UNKNOWN = -1
AMBIGUOUS = -2


def normalise_path(p: str) -> str:
    p = posixpath.normpath(p.replace("\\", "/"))
    return p[2:] if p.startswith("./") else p


def basename(p: str) -> str:
    return posixpath.basename(p.replace("\\", "/"))


class PathIndex:
    """Lookup of names against the images of one file (see the module docstring)."""

    def __init__(self, paths: Sequence[str], resolved_paths: Optional[Sequence[str]] = None) -> None:
        self.paths = list(paths)
        self._exact = {p: k for k, p in enumerate(self.paths)}
        self._other: dict[str, int] = {}
        for k, p in enumerate(resolved_paths or ()):
            self._other.setdefault(p, k)
        for k, p in enumerate(self.paths):
            self._other.setdefault(normalise_path(p), k)
        self._base: dict[str, list[int]] = {}
        for k, p in enumerate(self.paths):
            self._base.setdefault(basename(p), []).append(k)

    def row(self, name: str) -> int:
        """The row ``name`` matches, :data:`UNKNOWN` or :data:`AMBIGUOUS`."""
        k = self._exact.get(name)
        if k is None:
            k = self._other.get(name)
        if k is None:
            k = self._other.get(normalise_path(name))
        if k is not None:
            return k
        rows = self._base.get(basename(name))
        if not rows:
            return UNKNOWN
        return rows[0] if len(rows) == 1 else AMBIGUOUS

    def sharing(self, name: str, limit: int = 3) -> list[str]:
        """Paths of the images whose file name is ``name``'s (for an ambiguity message)."""
        return [self.paths[r] for r in self._base.get(basename(name), [])[:limit]]
