"""Phase 2: the HTML duplicate explorer written next to a similarity file's data."""

from __future__ import annotations

from .pagedata import IncompleteFileError, read_page_data
from .server import make_server, serve
from .site import build_explorer

__all__ = ["build_explorer", "serve", "make_server", "read_page_data", "IncompleteFileError"]
