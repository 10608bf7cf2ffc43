"""The ``dupscope`` command: one subcommand per step of the pipeline.

Each ``_add_<name>`` function registers one subcommand and its handler; handlers import their
module lazily so that ``dupscope --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _add_similarity(sub: argparse._SubParsersAction) -> None:
    """Phase 1: annotations -> images -> embeddings -> similarity HDF5."""
    p = sub.add_parser(
        "similarity",
        help="embed the images of an annotation file and write their similarities to HDF5",
        description="Decode and embed every image listed in ANNOTATIONS (COCO JSON, CSV/TSV, JSON "
        "Lines, a text list of paths, or a folder), compute the similarity (1 + cos) / 2 of all "
        "pairs and write them, with each image's nearest neighbours, to an HDF5 file. Images that "
        "cannot be read are recorded with the reason and do not stop the run.",
    )
    p.add_argument("annotations", metavar="ANNOTATIONS", help="annotation file or image folder")
    p.add_argument("-o", "--output", required=True, metavar="SIM_H5", help="HDF5 file to write")
    p.add_argument("--image-root", metavar="DIR",
                   help="folder relative image paths start from (default: the annotation file's folder)")
    p.add_argument("--model", default="efficientnet-lite0", metavar="NAME_OR_ONNX",
                   help="efficientnet-lite0 (default), dct32 (model-free), or an ONNX file")
    p.add_argument("--input-size", metavar="H[xW]",
                   help="input size for an ONNX model whose height/width are dynamic")
    p.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean of pixel/255 for an ONNX model")
    p.add_argument("--std", metavar="S[,S,S]", help="per-channel std of pixel/255 for an ONNX model")
    p.add_argument("--resize", choices=("stretch", "crop"),
                   help="fit images to the model input by stretching (default) or centre-cropping")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="images per model call (default 32)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="decode threads (default: CPU count)")
    p.add_argument("--k", type=int, default=32, metavar="K", help="neighbours kept per image (default 32)")
    p.add_argument("--dense", dest="dense", action="store_true", default=None,
                   help="always write the full N x N matrix")
    p.add_argument("--no-dense", dest="dense", action="store_false",
                   help="write neighbours only (default when the matrix would need over 8 GiB or "
                   "25%% of the free disk space)")
    p.add_argument("--keep-embeddings", action="store_true", help="also store the embeddings (float16)")
    p.add_argument("--path-column", metavar="NAME", help="column/key holding the image path")
    p.add_argument("--label-column", metavar="NAME", help="column/key holding the label")
    p.add_argument("--split-column", metavar="NAME", help="column/key holding the split")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")

    def floats(text: str | None):
        return None if text is None else [float(v) for v in text.replace(" ", "").split(",") if v]

    def run(args: argparse.Namespace) -> int:
        from .models import get_model
        from .pipeline import HARD_ERRORS, compute_similarity

        try:
            size = None
            if args.input_size:
                parts = args.input_size.lower().replace("*", "x").split("x")
                size = (int(parts[0]), int(parts[-1]))
            model = get_model(args.model, input_size=size, mean=floats(args.mean), std=floats(args.std),
                              resize=args.resize)
            summary = compute_similarity(
                args.annotations, args.output, image_root=args.image_root, model=model,
                device=args.device, batch_size=args.batch_size, workers=args.workers, k=args.k,
                dense=args.dense, keep_embeddings=args.keep_embeddings, path_column=args.path_column,
                label_column=args.label_column, split_column=args.split_column,
                progress=not args.quiet,
            )
        except HARD_ERRORS as exc:
            print(f"dupscope similarity: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("dupscope similarity: interrupted; no output written", file=sys.stderr)
            return 130
        return 0 if summary["n_ok"] else 2

    p.set_defaults(handler=run)


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
