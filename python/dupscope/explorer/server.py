"""``dupscope serve``: a small local HTTP server for an explorer folder."""

from __future__ import annotations

import functools
import os
import socket
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

__all__ = ["make_server", "serve", "server_url"]


class _Handler(SimpleHTTPRequestHandler):
    """Static files with no caching (a rebuilt folder shows at once) and quiet logs."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".webp": "image/webp", ".svg": "image/svg+xml"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class name
        pass


class _Server(ThreadingHTTPServer):
    # The browser opens several connections at once for thumbnails; the socketserver default
    # listen backlog of 5 can refuse some of them while the accept loop is busy.
    request_queue_size = 128
    daemon_threads = True


def make_server(directory: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """Create (not start) an HTTP server for an explorer folder.

    Parameters
    ----------
    directory
        A folder written by :func:`dupscope.explorer.build_explorer`.
    host
        Address to bind; ``0.0.0.0`` makes it reachable from other machines.
    port
        Port, ``0`` for any free one (read it back from ``server.server_address``).

    Returns
    -------
    http.server.ThreadingHTTPServer
    """
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"{directory} has no index.html; write it with `dupscope visualize` first")
    handler = functools.partial(_Handler, directory=str(directory))
    return _Server((host, port), handler)


def server_url(server: ThreadingHTTPServer) -> str:
    """The URL to open for a server from :func:`make_server`."""
    host, port = server.server_address[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in str(host):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(directory: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
          *, out: TextIO | None = None) -> None:
    """Serve an explorer folder until interrupted, printing its URL first.

    Parameters
    ----------
    directory
        A folder written by :func:`dupscope.explorer.build_explorer`.
    host
        Address to bind (default loopback only; ``0.0.0.0`` for every interface).
    port
        Port, ``0`` for any free one.
    out
        Where to print the URL (default stdout).
    """
    out = out or sys.stdout
    server = make_server(directory, host, port)
    print(f"Serving {directory} at {server_url(server)} (Ctrl+C to stop)", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
