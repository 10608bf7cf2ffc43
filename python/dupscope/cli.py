"""The ``dupscope`` command: one subcommand per step of the pipeline.

Each ``_add_<name>`` function registers one subcommand and its handler; handlers import their
module lazily so that ``dupscope --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import defaults
from .errors import DupscopeError
from .models import DEFAULT_MODEL, default_model

#: Errors printed as one line (exit status 2): dupscope's own, and what the file system says
#: (missing files, permissions, full disks). Anything else is a bug and keeps its traceback.
ONE_LINE_ERRORS = (DupscopeError, OSError)


def _ranged(kind, low=None, high=None, *, what: str = ""):
    """An argparse type: ``kind`` (int or float) within [low, high], NaN refused."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if value != value or (low is not None and value < low) or (high is not None and value > high):
            span = (f"in [{low}, {high}]" if high is not None else f">= {low}") if low is not None else f"<= {high}"
            raise argparse.ArgumentTypeError(f"must be {span}{what}, got {text}")
        return value

    return parse


_positive = _ranged(int, 1)
_unit = _ranged(float, 0.0, 1.0)


def _phase1_arguments(p: argparse.ArgumentParser) -> None:
    """Options of phase 1, shared by `similarity` and `run`."""
    p.add_argument("--image-root", metavar="DIR",
                   help="folder relative image paths start from (default: the annotation file's folder)")
    p.add_argument("--model", default=None, metavar="NAME_OR_ONNX",
                   help=f"{DEFAULT_MODEL} (the copy detector), {DEFAULT_MODEL}-int8 (the same, network in int8; "
                   f"the default on CPUs with VNNI, else {DEFAULT_MODEL}), efficientnet-lite0 (plain ImageNet "
                   "features), dct32 (model-free), or an ONNX file")
    p.add_argument("--input-size", metavar="H[xW]",
                   help="input size for an ONNX model whose height/width are dynamic")
    p.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean of pixel/255 for an ONNX model")
    p.add_argument("--std", metavar="S[,S,S]", help="per-channel std of pixel/255 for an ONNX model")
    p.add_argument("--resize", choices=("stretch", "crop"),
                   help="fit images to the model input by stretching (default) or centre-cropping")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=_positive, default=None, metavar="N",
                   help=f"images per model call (default {defaults.BATCH_SIZE})")
    p.add_argument("--workers", type=_positive, default=None, metavar="N",
                   help="decode threads (default: one per usable core)")
    p.add_argument("--k", type=_positive, default=defaults.K, metavar="K",
                   help=f"neighbours kept per image (default {defaults.K})")
    p.add_argument("--dense", dest="dense", action="store_true", default=None,
                   help="always write the full N x N matrix")
    p.add_argument("--no-dense", dest="dense", action="store_false",
                   help="write neighbours only (default when the matrix would need over 8 GiB or "
                   "25%% of the free disk space)")
    p.add_argument("--keep-embeddings", action="store_true", help=argparse.SUPPRESS)  # always stored since schema 2
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the geometric check of candidate pairs: neighbours keep the embedding "
                   "similarity as their score (faster, cannot tell look-alikes from copies)")
    p.add_argument("--backend", choices=("inprocess", "ray"), default="inprocess",
                   help="where phase 1 runs: this process (default) or tasks on a Ray cluster "
                   '(pip install "dupscope[ray]"; neighbour lists only, no dense matrix)')
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="with --backend ray: the cluster to join (e.g. auto, host:6379, ray://host:10001; "
                   "default: RAY_ADDRESS, else a new local cluster)")
    p.add_argument("--path-column", metavar="NAME", help="column/key holding the image path")
    p.add_argument("--label-column", metavar="NAME", help="column/key holding the label")
    p.add_argument("--split-column", metavar="NAME", help="column/key holding the split")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def _floats(text: str | None):
    return None if text is None else [float(v) for v in text.replace(" ", "").split(",") if v]


def _run_phase1(args: argparse.Namespace, annotations: str, output: str, command: str) -> int:
    """Phase 1 with the options of `_phase1_arguments`; returns the exit status."""
    from .errors import ModelError
    from .models import get_model
    from .pipeline import compute_similarity

    size = None
    if args.input_size:
        parts = args.input_size.lower().replace("*", "x").split("x")
        try:
            size = (int(parts[0]), int(parts[-1]))
        except ValueError:
            raise ModelError(f"--input-size must be H or HxW in pixels, got {args.input_size!r}") from None
    try:
        mean, std = _floats(args.mean), _floats(args.std)
    except ValueError:
        raise ModelError(f"--mean/--std must be numbers separated by commas, got {args.mean or args.std!r}") from None
    name = args.model if args.model is not None else default_model(args.device)
    model = get_model(name, input_size=size, mean=mean, std=std, resize=args.resize)
    summary = compute_similarity(
        annotations, output, image_root=args.image_root, model=model,
        device=args.device, batch_size=args.batch_size, workers=args.workers, k=args.k,
        dense=args.dense, keep_embeddings=args.keep_embeddings, path_column=args.path_column,
        label_column=args.label_column, split_column=args.split_column,
        progress=not args.quiet, verify=args.verify, backend=args.backend,
        ray_options=_ray_options(args),
    )
    return 0 if summary["n_ok"] else 2


def _ray_options(args: argparse.Namespace):
    """RayOptions from --address (None for the in-process backend)."""
    if args.backend != "ray":
        if args.address:
            from .errors import PipelineError

            raise PipelineError("--address is for --backend ray")
        return None
    from .cluster import RayOptions

    return RayOptions(address=args.address)


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
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="SIM_H5", help="HDF5 file to write")
    out.add_argument("--append", metavar="SIM_H5",
                     help="add the images of ANNOTATIONS to this existing file instead: only they are "
                     "embedded, with the file's model and fit; the file is replaced when the new one is "
                     "complete")
    p.add_argument("--reference", metavar="REF_H5",
                   help="compare the images of ANNOTATIONS with those of this similarity file (its model and "
                   "fit; it is only read) and write the query images with their neighbours to -o")
    _phase1_arguments(p)
    p.set_defaults(handler=lambda args: _run_append(args) if args.append or args.reference else
                   _run_phase1(args, args.annotations, args.output, "similarity"))


def _run_append(args: argparse.Namespace) -> int:
    """`similarity NEW --append FILE` and `similarity QUERY --reference FILE -o OUT`: the model, k,
    density and verification are the stored file's."""
    from .append import append_similarity
    from .errors import AppendError
    from .reference import reference_similarity

    flag = "--append" if args.append else "--reference"
    if args.append and args.reference:
        raise AppendError("--append and --reference cannot be given together")
    for name, default in (("model", None), ("k", defaults.K), ("dense", None), ("input_size", None),
                          ("mean", None), ("std", None), ("resize", None)):
        if getattr(args, name, default) != default:
            raise AppendError(f"--{name.replace('_', '-')} cannot be given with {flag}: the file's own is used")
    if not args.verify:
        raise AppendError(f"--no-verify cannot be given with {flag}: the file's own setting is used")
    if args.backend != "inprocess" or args.address:
        raise AppendError(f"--backend ray cannot be given with {flag}: it embeds only the new images, in this process")
    if args.reference:
        reference_similarity(args.annotations, args.reference, args.output, image_root=args.image_root,
                             device=args.device, batch_size=args.batch_size, workers=args.workers,
                             path_column=args.path_column, label_column=args.label_column,
                             split_column=args.split_column, progress=not args.quiet)
        return 0
    summary = append_similarity(args.annotations, args.append, image_root=args.image_root, device=args.device,
                                batch_size=args.batch_size, workers=args.workers, path_column=args.path_column,
                                label_column=args.label_column, split_column=args.split_column,
                                progress=not args.quiet)
    return 0 if summary["n_ok_new"] else 2


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
    _phase2_arguments(p)
    p.add_argument("--workers", type=_positive, default=None, help="threads making thumbnails")

    p.set_defaults(handler=lambda args: _run_phase2(args, args.h5, args.output, "visualize"))


def _run_phase2(args: argparse.Namespace, h5: str, output: str, command: str) -> int:
    """Phase 2 with the options of `visualize`; returns the exit status."""
    from .explorer import build_explorer

    index = build_explorer(
        h5, output, predictions=args.predictions, trust_pickle=args.trust_pickle,
        thumb_size=args.thumb_size, workers=getattr(args, "workers", None), progress=not args.quiet,
        overwrite=getattr(args, "overwrite", False),
    )
    if not args.quiet:
        print(f"Open {index} in a browser, or run: dupscope serve {output}")
    return 0


def _phase2_arguments(p: argparse.ArgumentParser, quiet: bool = True) -> None:
    p.add_argument("--predictions", metavar="PKL",
                   help="pickle of model predictions: N scores, an N x C array of class scores, "
                   "or a dict keyed by file name")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load the predictions pickle without restrictions (it can run code)")
    p.add_argument("--thumb-size", type=_ranged(int, 16, 1024), default=128, metavar="PX",
                   help="longest side of thumbnails, 16-1024 (default: 128)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder that dupscope did not write")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_run(sub: argparse._SubParsersAction) -> None:
    """Both phases: annotations -> HDF5 -> explorer, into one folder."""
    p = sub.add_parser(
        "run", help="both phases: similarity, then the HTML explorer, into one folder",
        description="Run phase 1 (similarity HDF5) and phase 2 (HTML explorer) in one go. The "
        "HDF5 file lands in TARGET_DIR/similarity.h5 unless --h5 says otherwise.",
    )
    p.add_argument("annotations", metavar="ANNOTATIONS", help="annotation file or image folder")
    p.add_argument("target", metavar="TARGET_DIR", help="folder for the explorer (and the HDF5 file)")
    p.add_argument("--h5", metavar="SIM_H5", help="where to write the HDF5 file")
    _phase1_arguments(p)
    _phase2_arguments(p, quiet=False)
    p.set_defaults(handler=_run_both)


def _run_both(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .explorer.site import check_target

    target = Path(args.target)
    h5 = args.h5 or str(target / "similarity.h5")
    check_target(target, Path(h5), overwrite=args.overwrite)  # before the long phase 1
    target.mkdir(parents=True, exist_ok=True)
    status = _run_phase1(args, args.annotations, h5, "run")
    if status:
        return status
    return _run_phase2(args, h5, str(target), "run")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    """Generate the built-in sample dataset and run both phases on it."""
    p = sub.add_parser(
        "demo", help="build a generated sample dataset with planted duplicates and explore it",
        description="Generate a few hundred pictures with planted duplicates of several kinds "
        "(exact, resized, JPEG, crop, brightness, border, grayscale; nothing is downloaded) into "
        "TARGET_DIR/dataset, then run both phases into TARGET_DIR.",
    )
    p.add_argument("target", metavar="TARGET_DIR", help="folder to write the demo into")
    p.add_argument("--images", type=_ranged(int, 2, 100000), default=240, metavar="N",
                   help="distinct generated pictures (default 240; copies are added on top)")
    p.add_argument("--model", default=None, metavar="NAME_OR_ONNX",
                   help=f"{DEFAULT_MODEL}, {DEFAULT_MODEL}-int8 (default on CPUs with VNNI, else {DEFAULT_MODEL}), "
                   "efficientnet-lite0 or dct32")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from .demo import make_demo_dataset
        from .explorer.site import check_target, mark_target

        target = Path(args.target)
        check_target(target)
        mark_target(target)
        if not args.quiet:
            print(f"Generating the demo dataset in {target / 'dataset'} ...")
        data = make_demo_dataset(target / "dataset", n_originals=args.images,
                                 n_copied=max(1, args.images // 4))
        # Exactly `dupscope run` on the generated dataset, so every other option keeps its default.
        argv = ["run", str(data.annotations), str(target), "--device", args.device,
                "--predictions", str(data.predictions)] + (["--model", args.model] if args.model else [])
        status = _run_both(build_parser().parse_args(argv + (["--quiet"] if args.quiet else [])))
        if status == 0:
            h5 = target / "similarity.h5"
            print(f"\nDemo ready: {data.n_images} images, {len(data.groups)} planted duplicate groups.")
            print(f"  open      {target / 'index.html'}   (or: dupscope serve {target})")
            print(f"  summary   dupscope report {h5}")
            print(f"  accuracy  dupscope evaluate {h5} {data.ground_truth}")
        return status

    p.set_defaults(handler=run)


def _add_report(sub: argparse._SubParsersAction) -> None:
    """A terminal summary of a similarity file."""
    p = sub.add_parser(
        "report", help="summarise a similarity file in the terminal (or as JSON)",
        description="Counts of duplicate pairs and groups at several thresholds, failed images, "
        "the most similar pairs, duplicates across splits and duplicates whose labels differ.",
    )
    p.add_argument("h5", help="similarity HDF5 file")
    p.add_argument("--threshold", type=_unit, default=None,
                   help="threshold for the split/label lists, in [0, 1] (default: the suggested one)")
    p.add_argument("--top", type=_ranged(int, 0), default=10, help="rows in each list (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    def run(args: argparse.Namespace) -> int:
        import json

        from .report import print_report, summarize

        summary = summarize(args.h5, threshold=args.threshold, top=args.top)
        if args.json:
            print(json.dumps(_json_safe(summary), indent=1, allow_nan=False))
        else:
            print_report(summary)
        return 0

    p.set_defaults(handler=run)

def _json_safe(value):
    """``value`` with NaN and infinities as None (JSON has no NaN), containers walked."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _add_export(sub: argparse._SubParsersAction) -> None:
    """The delete list."""
    p = sub.add_parser(
        "export", help="write the delete list: one row per image with its group and keep/remove",
        description="Groups duplicates around a representative (no chaining of different pictures "
        "through a shared look-alike), keeps one image per group (the largest, ties to the first "
        "in annotation order) and writes path, group, action (keep/remove), width, height and "
        "best score for every image.",
    )
    p.add_argument("h5", help="similarity HDF5 file")
    p.add_argument("--threshold", type=_unit, default=None,
                   help="pairs scoring at or above it are duplicates (default: the suggested threshold)")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    p.add_argument("--keep", choices=("largest", "first"), default="largest",
                   help="which image of a group to keep: largest (default; ties: first) or first")
    p.add_argument("--marks", metavar="MARKS_JSON",
                   help="apply a review made in the explorer (its 'Export marks' file): pairs marked "
                   "'not a duplicate' are never grouped, images marked 'keep' are kept")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")

    def run(args: argparse.Namespace) -> int:
        from .export import delete_list, write_delete_list

        dl = delete_list(args.h5, threshold=args.threshold, keep=args.keep, marks=args.marks)
        text = write_delete_list(dl, args.output, args.format)
        if args.output is None:
            sys.stdout.flush()
            sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))  # names byte for byte
            sys.stdout.buffer.flush()
        else:
            n_remove = int((~dl.keep).sum())
            print(f"wrote {args.output}: {len(dl.paths)} images, {n_remove} to remove, threshold "
                  f"{dl.threshold:.3f}", file=sys.stderr)
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
    p.add_argument("--port", type=_ranged(int, 0, 65535), default=8000,
                   help="port, 0-65535 (default: 8000; 0 for any free one)")
    p.add_argument("--originals", metavar="DIR", default=None,
                   help="folder of the original images, served read-only for the compare view "
                   "(default: the data set root recorded by `dupscope visualize`)")

    def run(args: argparse.Namespace) -> int:
        from .explorer import serve

        serve(args.directory, args.host, args.port, originals=args.originals)
        return 0

    p.set_defaults(handler=run)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Accuracy of a similarity file against known duplicates."""
    p = sub.add_parser(
        "evaluate",
        help="precision, recall, F1 and average precision of a similarity file against known duplicates",
        description="Compare the similarities in SIM_H5 with known duplicates in GROUND_TRUTH: a JSON "
        'file ({"pairs": [[a, b], ...]}, {"groups": [[a, b, c], ...]} or a list of groups) or a CSV '
        "file (two columns a,b per pair, or a header with path and group columns). Images are named "
        "by their path as in the annotation file, by basename when only one image has it, or by row "
        "index. Reports precision, recall and F1 at a threshold, average precision, recall at "
        "precision >= 0.95 and the threshold with the best F1, over all candidate pairs (all pairs "
        "with the dense matrix, else the pairs in the neighbour lists; a true pair in no neighbour "
        "list is a miss at every threshold).",
    )
    p.add_argument("h5", metavar="SIM_H5", help="similarity HDF5 file written by `dupscope similarity`")
    p.add_argument("ground_truth", metavar="GROUND_TRUTH", help="JSON or CSV file of duplicate pairs or groups")
    p.add_argument("--threshold", type=_unit, default=None, metavar="T",
                   help="report precision/recall/F1 at this similarity (default: the best-F1 threshold)")
    p.add_argument("--min-precision", type=_ranged(float, 0.0, 1.0), default=0.95, metavar="P",
                   help="precision level for 'recall at precision' (default: 0.95)")
    p.add_argument("--neighbors-only", action="store_true",
                   help="evaluate the neighbour lists even when the file has the dense matrix")
    p.add_argument("--plot", metavar="PNG", help="write the precision-recall curve to this PNG file")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")

    def run(args: argparse.Namespace) -> int:
        import json

        from .evaluate import evaluate, plot_pr_curve

        result = evaluate(args.h5, args.ground_truth, threshold=args.threshold,
                          min_precision=args.min_precision, use_dense=not args.neighbors_only)
        if args.plot:
            plot_pr_curve(result, args.plot)
        if args.json:
            out = result.to_dict()
            if args.plot:
                out["plot"] = args.plot
            print(json.dumps(_json_safe(out), indent=2, allow_nan=False))
        else:
            print(result.summary())
            if args.plot:
                print(f"wrote {args.plot}")
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
    for add in (_add_similarity, _add_visualize, _add_serve, _add_run, _add_demo, _add_report, _add_export, _add_evaluate):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ONE_LINE_ERRORS as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"dupscope {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dupscope {args.command}: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
