"""The ``dupscope`` command: one subcommand per step of the pipeline.

Each ``_add_<name>`` function registers one subcommand and its handler; handlers import their
module lazily so that ``dupscope --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _add_similarity(sub: argparse._SubParsersAction) -> None:
    """Phase 1: annotations -> images -> embeddings -> similarity HDF5 (filled by pipeline owner)."""


def _add_visualize(sub: argparse._SubParsersAction) -> None:
    """Phase 2: similarity HDF5 -> HTML explorer folder."""
    p = sub.add_parser(
        "visualize",
        help="write an HTML duplicate explorer for a similarity file",
        description="Write a self-contained duplicate explorer into OUTPUT: open OUTPUT/index.html "
        "directly (no server needed), copy the folder elsewhere, or serve it with `dupscope serve`.",
    )
    p.add_argument("h5", help="similarity HDF5 file written by `dupscope similarity`")
    p.add_argument("-o", "--output", required=True, metavar="TARGET_DIR",
                   help="folder to write (index.html, data.js, thumbnails)")
    p.add_argument("--predictions", metavar="PKL",
                   help="pickle of model predictions: N scores, an N x C array of class scores, "
                   "or a dict keyed by file name")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load the predictions pickle without restrictions (it can run code)")
    p.add_argument("--thumb-size", type=int, default=128, metavar="PX",
                   help="longest side of thumbnails (default: 128)")
    p.add_argument("--workers", type=int, default=None, help="threads making thumbnails")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    def run(args: argparse.Namespace) -> int:
        import pickle

        from .explorer import IncompleteFileError, build_explorer
        from .predictions import PredictionsError

        try:
            index = build_explorer(
                args.h5, args.output, predictions=args.predictions, trust_pickle=args.trust_pickle,
                thumb_size=args.thumb_size, workers=args.workers, progress=not args.quiet,
            )
        except (IncompleteFileError, PredictionsError, pickle.UnpicklingError, FileNotFoundError,
                KeyError) as exc:
            print(f"dupscope visualize: error: {exc}", file=sys.stderr)
            return 2
        print(f"Open {index} in a browser, or run: dupscope serve {args.output}")
        return 0

    p.set_defaults(handler=run)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    """Serve an explorer folder over HTTP."""
    p = sub.add_parser(
        "serve",
        help="serve an explorer folder over HTTP",
        description="Serve a folder written by `dupscope visualize` and print its URL.",
    )
    p.add_argument("directory", help="folder written by `dupscope visualize`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1; 0.0.0.0 for other machines)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 for any free one)")

    def run(args: argparse.Namespace) -> int:
        from .explorer import serve

        try:
            serve(args.directory, args.host, args.port)
        except (FileNotFoundError, OSError) as exc:
            print(f"dupscope serve: error: {exc}", file=sys.stderr)
            return 2
        return 0

    p.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="dupscope",
        description="Find near-duplicate images in large datasets and look at them.",
    )
    parser.add_argument("--version", action="version", version=f"dupscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_similarity, _add_visualize, _add_serve):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
