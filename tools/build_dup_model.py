"""Build ``dupscope_v1.onnx``: the network + dct hybrid behind the built-in model ``dupscope-v1``.

Made by graph surgery on the shipped ``efficientnet_lite0.onnx`` with the ``onnx`` package (no
torch, no new weights), so the file is reproducible from this script and the shipped files::

    python tools/build_dup_model.py      # writes python/dupscope/models/dupscope_v1.onnx

The input is the same as ``efficientnet-lite0``'s (``input``, float32 (batch, 3, 224, 224), RGB,
ImageNet-normalised), so dupscope's decoder and :func:`dupscope.embed.preprocess` feed it
unchanged. The graph::

    input x (batch, 3, 224, 224)       (pixel / 255 - mean_c) / std_c
    p = x * std_c + mean_c              back to [0, 1] RGB
    |
    +-- network branch
    |   m, s = mean and std of p over (C, H, W), per image; s clamped at 1/255
    |   q = clip((p - m) / s * 0.225 + 0.45, 0, 1)
    |                                   per-image contrast standardisation: one affine map for
    |                                   all three channels, so a dark photo (a small object on
    |                                   black) fills the range the network was trained on
    |   EfficientNet-Lite0 stem and blocks 0-7 on (q - mean_c) / std_c (the later blocks, the
    |   head convolution and the pooling of the original file are cut off)
    |   f = /_blocks.7/Add_output_0     (batch, 80, 14, 14)
    |   g = mean_hw(max(f, 1e-6) ^ 3) ^ (1/3)       GeM pooling, p = 3  -> (batch, 80)
    |
    +-- dct branch (the dct32 model, made mirror-invariant)
        y = 0.299 R + 0.587 G + 0.114 B of p        ITU-R 601 luma, as Pillow's "L"
        t = 7 x 7 average pooling of y              area resize 224 -> 32
        d = dct32(t)                                the 63 weighted low-frequency DCT
                                                    coefficients of tools/build_dct_model.py
        d_k = |d_k| where the horizontal frequency of entry k is odd: a horizontal mirror
        negates exactly those coefficients, so the branch does not change under a flip
        -> (batch, 63)
    |
    embedding = concat(g, d)            (batch, 143): columns 0-79 network, 80-142 dct

The two branches are combined into one similarity after embedding, by
:func:`dupscope.postprocess.fuse_embeddings` (per-branch normalisation, centring, whitening of
the network branch, weights); see ``benchmarks/ACCURACY.md`` for the measurements behind each
step.
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
DEFAULT_OUT = MODELS / "dupscope_v1.onnx"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_dct_model import KEEP, SIZE, dct_matrix, frequency_weights  # noqa: E402

MID_LAYER = "/_blocks.7/Add_output_0"
MID_CHANNELS = 80
GEM_P = 3.0
GEM_EPS = 1e-6
TARGET_MEAN = 0.45  # grey-level mean and std the input is standardised to (in [0, 1] units)
TARGET_STD = 0.225
MIN_STD = 1.0 / 255.0  # a flat image is not blown up beyond one grey level per unit
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
INPUT = 224
POOL = INPUT // SIZE  # 7: 224 / 7 = 32 exactly, so a mirrored input gives a mirrored thumbnail
NET_DIM = MID_CHANNELS
DCT_DIM = KEEP * KEEP - 1


def odd_horizontal() -> np.ndarray:
    """Mask of the dct entries whose horizontal frequency is odd (entry k is ``divmod(k + 1, 8)``)."""
    return (np.arange(1, KEEP * KEEP) % KEEP) % 2 == 1


def _prune(graph, keep_output: str) -> None:
    """Drop every node and initialiser that ``keep_output`` does not depend on."""
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack, live = set(), [keep_output], set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in live:
            live.add(id(node))
            stack.extend(i for i in node.input if i)
    nodes = [n for n in graph.node if id(n) in live]
    del graph.node[:]
    graph.node.extend(nodes)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def build(out: Path, source: Path = SOURCE) -> str:
    """Write the hybrid ONNX file to ``out`` and return its sha256.

    Parameters
    ----------
    out : Path
        Where to write.
    source : Path
        The shipped ``efficientnet_lite0.onnx``.

    Returns
    -------
    str
        Hex sha256 of the written file.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(source))
    g = m.graph
    (inp,) = g.input
    assert inp.name == "input"
    # Every use of the image inside the network now reads the standardised image instead.
    for node in g.node:
        for k, name in enumerate(node.input):
            if name == "input":
                node.input[k] = "dup/net_input"
    del g.output[:]
    del g.value_info[:]
    _prune(g, MID_LAYER)

    c = dct_matrix(SIZE)[:KEEP].astype(np.float32)
    odd = odd_horizontal()
    mean4 = IMAGENET_MEAN.reshape(1, 3, 1, 1)
    std4 = IMAGENET_STD.reshape(1, 3, 1, 1)
    consts = {
        "dup/std_c": std4,
        "dup/mean_c": mean4,
        "dup/inv_std_c": (1.0 / std4).astype(np.float32),
        "dup/min_std": np.array(MIN_STD, np.float32),
        "dup/target_std": np.array(TARGET_STD, np.float32),
        "dup/target_mean": np.array(TARGET_MEAN, np.float32),
        "dup/zero": np.array(0.0, np.float32),
        "dup/one": np.array(1.0, np.float32),
        "dup/gem_eps": np.array(GEM_EPS, np.float32),
        "dup/gem_inv_p": np.array(1.0 / GEM_P, np.float32),
        "dup/luma": LUMA.reshape(1, 3, 1, 1),
        "dup/dct_rows": c,
        "dup/dct_cols": np.ascontiguousarray(c.T),
        "dup/ac_index": np.arange(1, KEEP * KEEP, dtype=np.int64),
        "dup/freq_weight": frequency_weights(KEEP).astype(np.float32),
        # |d| on odd horizontal frequencies: d * sign-mask would not do (the sign is what
        # changes), so take Abs of everything and pick per entry: d_out = d + m * (|d| - d).
        "dup/odd_mask": odd.astype(np.float32),
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    N = helper.make_node
    nodes = [
        # de-normalise to [0, 1]
        N("Mul", ["input", "dup/std_c"], ["dup/p_scaled"], name="dup/denorm_scale"),
        N("Add", ["dup/p_scaled", "dup/mean_c"], ["dup/p"], name="dup/denorm_shift"),
        # per-image standardisation
        N("ReduceMean", ["dup/p"], ["dup/m"], axes=[1, 2, 3], keepdims=1, name="dup/img_mean"),
        N("Sub", ["dup/p", "dup/m"], ["dup/d"], name="dup/centre"),
        N("Mul", ["dup/d", "dup/d"], ["dup/d2"], name="dup/square"),
        N("ReduceMean", ["dup/d2"], ["dup/var"], axes=[1, 2, 3], keepdims=1, name="dup/img_var"),
        N("Sqrt", ["dup/var"], ["dup/s_raw"], name="dup/img_std"),
        N("Max", ["dup/s_raw", "dup/min_std"], ["dup/s"], name="dup/clamp_std"),
        N("Div", ["dup/target_std", "dup/s"], ["dup/gain"], name="dup/gain"),
        N("Mul", ["dup/d", "dup/gain"], ["dup/q0"], name="dup/scale"),
        N("Add", ["dup/q0", "dup/target_mean"], ["dup/q1"], name="dup/shift"),
        N("Clip", ["dup/q1", "dup/zero", "dup/one"], ["dup/q"], name="dup/clip"),
        N("Sub", ["dup/q", "dup/mean_c"], ["dup/qc"], name="dup/renorm_shift"),
        N("Mul", ["dup/qc", "dup/inv_std_c"], ["dup/net_input"], name="dup/renorm_scale"),
    ]
    tail = [
        # GeM of block 7
        N("Max", [MID_LAYER, "dup/gem_eps"], ["dup/f_pos"], name="dup/gem_clamp"),
        N("Mul", ["dup/f_pos", "dup/f_pos"], ["dup/f_sq"], name="dup/gem_sq"),
        N("Mul", ["dup/f_sq", "dup/f_pos"], ["dup/f_cube"], name="dup/gem_cube"),
        N("ReduceMean", ["dup/f_cube"], ["dup/f_mean"], axes=[2, 3], keepdims=0, name="dup/gem_mean"),
        N("Pow", ["dup/f_mean", "dup/gem_inv_p"], ["dup/net"], name="dup/gem_root"),
        # dct branch
        N("Mul", ["dup/p", "dup/luma"], ["dup/rgb_w"], name="dup/luma_weights"),
        N("ReduceSum", ["dup/rgb_w", "dup/luma_axis"], ["dup/grey"], keepdims=1, name="dup/luma"),
        N("AveragePool", ["dup/grey"], ["dup/thumb"], kernel_shape=[POOL, POOL], strides=[POOL, POOL],
          name="dup/thumbnail"),
        N("MatMul", ["dup/dct_rows", "dup/thumb"], ["dup/dct_v"], name="dup/dct_vertical"),
        N("MatMul", ["dup/dct_v", "dup/dct_cols"], ["dup/dct_block"], name="dup/dct_horizontal"),
        N("Flatten", ["dup/dct_block"], ["dup/dct_flat"], axis=1, name="dup/dct_flatten"),
        N("Gather", ["dup/dct_flat", "dup/ac_index"], ["dup/dct_ac"], axis=1, name="dup/drop_dc"),
        N("Mul", ["dup/dct_ac", "dup/freq_weight"], ["dup/dct"], name="dup/dct_weight"),
        N("Abs", ["dup/dct"], ["dup/dct_abs"], name="dup/dct_abs"),
        N("Sub", ["dup/dct_abs", "dup/dct"], ["dup/dct_delta"], name="dup/dct_delta"),
        N("Mul", ["dup/dct_delta", "dup/odd_mask"], ["dup/dct_fix"], name="dup/dct_odd"),
        N("Add", ["dup/dct", "dup/dct_fix"], ["dup/dct_inv"], name="dup/dct_mirror_invariant"),
        N("Concat", ["dup/net", "dup/dct_inv"], ["embedding"], axis=1, name="dup/concat"),
    ]
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "dup/luma_axis"))
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old + tail)
    g.output.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", NET_DIM + DCT_DIM]))
    g.name = "dupscope_v1"
    m.producer_name = "dupscope tools/build_dup_model.py"
    m.producer_version = ""
    m.doc_string = ("dupscope-v1: contrast-standardised EfficientNet-Lite0 block-7 GeM (80) + mirror-invariant "
                    "dct32 of the same image (63)")
    del m.metadata_props[:]
    onnx.checker.check_model(m, full_check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = m.SerializeToString()
    out.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------
# Reference: the same computation from the original file and numpy
# ------------------------------------------------------------------------------------------
def block7_model_bytes(source: Path = SOURCE) -> bytes:
    """The unmodified network with block 7's output exposed as a second graph output."""
    import onnx

    m = onnx.load(str(source))
    m.graph.output.append(onnx.helper.make_tensor_value_info(MID_LAYER, onnx.TensorProto.FLOAT,
                                                             ["batch", MID_CHANNELS, "h", "w"]))
    return m.SerializeToString()


def reference(x: np.ndarray, session) -> np.ndarray:
    """``dupscope_v1``'s output computed from the original network and numpy.

    Parameters
    ----------
    x : numpy.ndarray
        float32 (B, 3, 224, 224), ImageNet-normalised, as fed to either model.
    session : onnxruntime.InferenceSession
        On :func:`block7_model_bytes`.

    Returns
    -------
    numpy.ndarray
        float64 (B, 143).
    """
    x = np.asarray(x, np.float32)
    p = x.astype(np.float64) * IMAGENET_STD.reshape(1, 3, 1, 1) + IMAGENET_MEAN.reshape(1, 3, 1, 1)
    m = p.mean(axis=(1, 2, 3), keepdims=True)
    s = np.maximum(p.std(axis=(1, 2, 3), keepdims=True), MIN_STD)
    q = np.clip((p - m) / s * TARGET_STD + TARGET_MEAN, 0.0, 1.0)
    xin = ((q - IMAGENET_MEAN.reshape(1, 3, 1, 1)) / IMAGENET_STD.reshape(1, 3, 1, 1)).astype(np.float32)
    feat = session.run([MID_LAYER], {"input": xin})[0].astype(np.float64)
    net = np.mean(np.maximum(feat, GEM_EPS) ** GEM_P, axis=(2, 3)) ** (1.0 / GEM_P)
    grey = np.einsum("bchw,c->bhw", p, LUMA.astype(np.float64))
    thumb = grey.reshape(len(x), SIZE, POOL, SIZE, POOL).mean(axis=(2, 4))
    cm = dct_matrix(SIZE)
    full = np.einsum("ij,bjk,lk->bil", cm, thumb, cm)
    dct = full[:, :KEEP, :KEEP].reshape(len(x), -1)[:, 1:] * frequency_weights(KEEP)
    odd = odd_horizontal()
    dct[:, odd] = np.abs(dct[:, odd])
    return np.concatenate([net, dct], axis=1)


def verify(path: Path, source: Path = SOURCE) -> tuple[float, float]:
    """Compare the built file with :func:`reference` on smooth random images.

    Returns
    -------
    (float, float)
        Max absolute difference of the network and of the dct columns, relative to each
        branch's largest value.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    ref_sess = ort.InferenceSession(block7_model_bytes(source), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    # Low-contrast smooth pictures with an offset, so the standardisation does real work.
    base = rng.random((4, 3, 8, 8)).repeat(28, axis=2).repeat(28, axis=3)
    pix = 0.2 + 0.3 * base + 0.02 * rng.standard_normal(base.shape)
    x = ((pix - IMAGENET_MEAN.reshape(1, 3, 1, 1)) / IMAGENET_STD.reshape(1, 3, 1, 1)).astype(np.float32)
    got = sess.run(["embedding"], {"input": x})[0]
    ref = reference(x, ref_sess)
    errs = []
    for sl in (slice(0, NET_DIM), slice(NET_DIM, None)):
        errs.append(float(np.abs(got[:, sl] - ref[:, sl]).max() / np.abs(ref[:, sl]).max()))
    return errs[0], errs[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sha = build(args.output)
    e_net, e_dct = verify(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    print(f"sha256: {sha}")
    print(f"max |onnxruntime - reference| / max |reference|: network {e_net:.3g}, dct {e_dct:.3g}")
    return 0 if max(e_net, e_dct) < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
