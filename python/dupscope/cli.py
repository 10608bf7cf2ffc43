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
    """Phase 2: similarity HDF5 -> HTML explorer folder (filled by explorer owner)."""


def _add_serve(sub: argparse._SubParsersAction) -> None:
    """Serve an explorer folder over HTTP (filled by explorer owner)."""


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
