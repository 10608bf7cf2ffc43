"""Add ``dupscope-v3``'s output to the shipped network file ``efficientnet_lite0.onnx``.

The package ships one network file for its two network models: ``efficientnet-lite0`` reads
its ``embedding`` output (the export's own, the head average-pooled) and ``dupscope-v3``
(the default) its ``dupscope_v3`` output, which this script adds by graph surgery with the
``onnx`` package (no torch, no new weights). Run after ``tools/export_efficientnet.py``, or on
the shipped file itself: what an earlier run added is removed first, so the result is the same
bytes::

    python tools/build_dup_model.py      # rewrites python/dupscope/models/efficientnet_lite0.onnx

Both outputs take the same input (``input``, float32 (batch, 3, 224, 224), RGB,
ImageNet-normalised). A session asked for one output runs the network once; the ``dupscope_v3``
output max-pools two of its feature maps::

    input x (batch, 3, 224, 224)
    |
    EfficientNet-Lite0, unchanged
    |-- block 9 expansion (1x1 conv + BN + ReLU6)  (batch, 672, 14, 14)   global max pooling
    |-- head (conv + BN + ReLU6)                   (batch, 1280, 7, 7)    global max pooling
    |                                                                     (and, as exported,
    |                                                                     the average: embedding)
    dupscope_v3 = concat(max(head), max(block 9))  (batch, 1952): columns 0-1279 head,
                                                   1280-1951 block 9

Max pooling keeps the strongest response of each channel wherever it is in the picture, which
suits copies that were cropped, bordered or watermarked better than the average does. Block 9's
expansion layer (the first activation inside the second block of the 112-channel stage, at
14 x 14) responds to textures and shapes two stages below the head: it tells apart photos that
look alike to the head (star fields, nebulae) and still survives re-encoding and resizing. Of
the layers compared next to the head on the accuracy benchmark (the outputs and expansion layers
of blocks 5-15, max and GeM pooling), it did best; ``benchmarks/ACCURACY.md`` has the measurements. The two blocks are
combined into one similarity after embedding, by :func:`dupscope.postprocess.fuse_embeddings`
(per-block centring and whitening, then neighbour augmentation).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "python" / "dupscope" / "models"
SOURCE = MODELS / "efficientnet_lite0.onnx"
DEFAULT_OUT = SOURCE  # the one network file the package ships, rebuilt in place
PLAIN_OUTPUT = "embedding"  # the export's own output: efficientnet-lite0
OUTPUT = "dupscope_v3"  # what this script adds: dupscope-v3's raw embedding

HEAD = "/_swish_1/Clip_output_0"  # ReLU6 after the head convolution, before the pooling
HEAD_CHANNELS = 1280
MID_LAYER = "/_blocks.9/_swish/Clip_output_0"  # ReLU6 after block 9's expansion convolution
MID_CHANNELS = 672


def strip(m) -> None:
    """Remove what :func:`build` adds (the ``dup/`` nodes and the :data:`OUTPUT` output), in
    place, leaving the exported network; a no-op on a file that has none."""
    g = m.graph
    kept = [n for n in g.node if not n.name.startswith("dup/")]
    del g.node[:]
    g.node.extend(kept)
    outs = [o for o in g.output if o.name != OUTPUT]
    del g.output[:]
    g.output.extend(outs)


def build(out: Path = DEFAULT_OUT, source: Path = SOURCE) -> str:
    """Write the network with its two outputs to ``out`` and return the file's sha256.

    ``source`` may be the plain export or a file this function wrote (its additions are removed
    first), so rebuilding the shipped file in place gives the same bytes.

    Parameters
    ----------
    out : Path
        Where to write (default: the shipped file, in place).
    source : Path
        The network: ``tools/export_efficientnet.py``'s export, or the shipped file.

    Returns
    -------
    str
        Hex sha256 of the written file.
    """
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(source))
    strip(m)
    g = m.graph
    (inp,) = g.input
    assert inp.name == "input"
    produced = {o for n in g.node for o in n.output}
    if HEAD not in produced or MID_LAYER not in produced:
        raise SystemExit(f"{source} has no tensor {HEAD!r} or {MID_LAYER!r}: not the expected network")
    # The plain output stays as exported: the average pool of the head.
    pool_nodes = [n for n in g.node if HEAD in n.input]
    assert [n.op_type for n in pool_nodes] == ["GlobalAveragePool"], [n.op_type for n in pool_nodes]
    assert [o.name for o in g.output] == [PLAIN_OUTPUT], [o.name for o in g.output]
    del g.value_info[:]

    N = helper.make_node
    g.node.extend([
        N("GlobalMaxPool", [HEAD], ["dup/head_max4"], name="dup/head_max"),
        N("Flatten", ["dup/head_max4"], ["dup/head"], axis=1, name="dup/head_flatten"),
        N("GlobalMaxPool", [MID_LAYER], ["dup/mid_max4"], name="dup/mid_max"),
        N("Flatten", ["dup/mid_max4"], ["dup/mid"], axis=1, name="dup/mid_flatten"),
        N("Concat", ["dup/head", "dup/mid"], [OUTPUT], axis=1, name="dup/concat"),
    ])
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", HEAD_CHANNELS + MID_CHANNELS]))
    g.name = "efficientnet_lite0"
    m.producer_name = "dupscope tools/export_efficientnet.py + tools/build_dup_model.py"
    m.producer_version = ""
    m.doc_string = (f"EfficientNet-Lite0. Outputs: {PLAIN_OUTPUT!r}, the head average-pooled (1280, model "
                    f"efficientnet-lite0); {OUTPUT!r}, the head (1280) and block 9's expansion (672) max-pooled "
                    "(model dupscope-v3)")
    del m.metadata_props[:]
    onnx.checker.check_model(m, full_check=True)
    data = m.SerializeToString()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------
# Reference: the same computation from the original file and numpy
# ------------------------------------------------------------------------------------------
def feature_model_bytes(source: Path = SOURCE) -> bytes:
    """The network with the head activation and block 9's expansion exposed as graph outputs."""
    import onnx

    m = onnx.load(str(source))
    m.graph.output.append(onnx.helper.make_tensor_value_info(HEAD, onnx.TensorProto.FLOAT,
                                                             ["batch", HEAD_CHANNELS, "h", "w"]))
    m.graph.output.append(onnx.helper.make_tensor_value_info(MID_LAYER, onnx.TensorProto.FLOAT,
                                                             ["batch", MID_CHANNELS, "h", "w"]))
    return m.SerializeToString()


def reference(x: np.ndarray, session) -> np.ndarray:
    """``dupscope_v3``'s output computed from the original network's feature maps and numpy.

    Parameters
    ----------
    x : numpy.ndarray
        float32 (B, 3, 224, 224), ImageNet-normalised, as fed to either model.
    session : onnxruntime.InferenceSession
        On :func:`feature_model_bytes`.

    Returns
    -------
    numpy.ndarray
        float64 (B, 1952).
    """
    head, mid = session.run([HEAD, MID_LAYER], {"input": np.asarray(x, np.float32)})
    head_max = head.astype(np.float64).max(axis=(2, 3))
    mid_max = mid.astype(np.float64).max(axis=(2, 3))
    return np.concatenate([head_max, mid_max], axis=1)


def verify(path: Path, source: Path = SOURCE) -> tuple[float, float, float]:
    """Compare the built file's outputs with :func:`reference` and with numpy's average of the
    head, on smooth random images.

    Returns
    -------
    (float, float, float)
        Max absolute difference of the head and of the block-9 columns of ``dupscope_v3``, and
        of the ``embedding`` output, each relative to its largest value.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    ref_sess = ort.InferenceSession(feature_model_bytes(source), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    base = rng.random((4, 3, 8, 8)).repeat(28, axis=2).repeat(28, axis=3)
    x = (base + 0.05 * rng.standard_normal(base.shape) - 0.45) / 0.225
    x = x.astype(np.float32)
    got, plain = sess.run([OUTPUT, PLAIN_OUTPUT], {"input": x})
    ref = reference(x, ref_sess)
    errs = []
    for sl in (slice(0, HEAD_CHANNELS), slice(HEAD_CHANNELS, None)):
        errs.append(float(np.abs(got[:, sl] - ref[:, sl]).max() / np.abs(ref[:, sl]).max()))
    head_avg = ref_sess.run([HEAD], {"input": x})[0].astype(np.float64).mean(axis=(2, 3))
    errs.append(float(np.abs(plain - head_avg).max() / np.abs(head_avg).max()))
    return errs[0], errs[1], errs[2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sha = build(args.output)
    e_head, e_mid, e_plain = verify(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    print(f"sha256: {sha}")
    print(f"max |onnxruntime - reference| / max |reference|: {OUTPUT} head {e_head:.3g}, block 9 {e_mid:.3g}; "
          f"{PLAIN_OUTPUT} (average of the head) {e_plain:.3g}")
    return 0 if max(e_head, e_mid, e_plain) < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
