"""``dupscope serve``: a small local HTTP server for an explorer folder."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import sys
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

__all__ = ["make_server", "serve", "server_url"]


ORIGINALS_PREFIX = "_originals"


class _Handler(SimpleHTTPRequestHandler):
    """Regular files under the folder and nothing else: links are resolved and must stay inside,
    no folder listings, no dotfiles (``.git/``, the explorer's marker), and only requests whose
    ``Host`` is this server (a web page elsewhere cannot read it through DNS rebinding). No
    caching (a rebuilt folder shows at once), idle connections time out, quiet logs.

    ``/_originals/REL`` serves the original image REL under the data set root (the folder named by
    the explorer's ``.dupscope-originals``, or ``originals=``), by the same rules: read-only,
    regular files only, and a path or link that resolves outside the root is not found."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".webp": "image/webp", ".svg": "image/svg+xml"}
    timeout = 30  # seconds a connection may sit idle (StreamRequestHandler sets it on the socket)

    def __init__(self, *args: Any, directory: str, allowed_hosts: frozenset[str], originals: str | None = None,
                 **kwargs: Any) -> None:
        self.root = os.path.realpath(directory)
        self.originals = os.path.realpath(originals) if originals else None
        self.allowed_hosts = allowed_hosts
        super().__init__(*args, directory=directory, **kwargs)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class name
        pass

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):  # [v6]:port
            host = host[1:host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.rsplit(":", 1)[0]
        if not host:
            return False
        if host in self.allowed_hosts:
            return True
        try:  # an address typed by hand is fine: rebinding needs a name
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False

    def _file(self) -> str | None:
        """The regular file a request names, or None."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        if any(p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        if not parts:
            parts = ["index.html"]
        root = self.root
        if parts[0] == ORIGINALS_PREFIX:
            if self.originals is None or len(parts) < 2:
                return None
            root, parts = self.originals, parts[1:]
        full = os.path.realpath(os.path.join(root, *parts))
        if not full.startswith(root.rstrip(os.sep) + os.sep) or not os.path.isfile(full):
            return None
        return full

    def send_head(self):  # the only way GET and HEAD reach files
        if not self._host_ok():
            self.send_error(421, "Misdirected request: unknown Host")
            return None
        full = self._file()
        if full is None:
            self.send_error(404, "Not found")
            return None
        try:
            f = open(full, "rb")
        except OSError:
            self.send_error(404, "Not found")
            return None
        st = os.fstat(f.fileno())
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(full))
        self.send_header("Content-Length", str(st.st_size))
        self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
        self.end_headers()
        return f


class _Server(ThreadingHTTPServer):
    # The browser opens several connections at once for thumbnails; the socketserver default
    # listen backlog of 5 can refuse some of them while the accept loop is busy.
    request_queue_size = 128
    daemon_threads = True


def _allowed_hosts(host: str) -> frozenset[str]:
    names = {"localhost", host.lower().strip("[]")}
    if host in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(n for n in names if n)


def _originals_root(directory: Path) -> str | None:
    from .site import ORIGINALS_FILE

    try:
        root = (directory / ORIGINALS_FILE).read_text(encoding="utf-8", errors="surrogateescape").strip()
    except OSError:
        return None
    return root if root and os.path.isdir(root) else None


def make_server(directory: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
                originals: str | os.PathLike[str] | None = None) -> ThreadingHTTPServer:
    """Create (not start) an HTTP server for an explorer folder.

    Parameters
    ----------
    directory
        A folder written by :func:`dupscope.explorer.build_explorer`.
    host
        Address to bind; ``0.0.0.0`` makes it reachable from other machines.
    port
        Port, ``0`` for any free one (read it back from ``server.server_address``).
    originals
        Folder of the original images, served read-only under ``/_originals/`` for the compare
        view (default: the data set root ``dupscope visualize`` recorded in the folder).

    Returns
    -------
    http.server.ThreadingHTTPServer
    """
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"{directory} has no index.html; write it with `dupscope visualize` first")
    root = os.fspath(originals) if originals is not None else _originals_root(directory)
    if root is not None and not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a folder (the originals to serve)")
    handler = functools.partial(_Handler, directory=str(directory), allowed_hosts=_allowed_hosts(host),
                                originals=root)
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
          *, out: TextIO | None = None, originals: str | os.PathLike[str] | None = None) -> None:
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
    originals
        As for :func:`make_server`.
    """
    out = out or sys.stdout
    server = make_server(directory, host, port, originals)
    print(f"Serving {directory} at {server_url(server)} (Ctrl+C to stop)", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
