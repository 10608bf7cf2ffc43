"""Build ``dct32.onnx``: dupscope's model-free embedding, as a small ONNX graph.

No training and no downloaded weights: the only constants are the DCT-II basis and a fixed
frequency weighting, so the file is fully reproducible from this script::

    python tools/build_dct_model.py      # writes python/dupscope/models/dct32.onnx

Graph (all float32)::

    input (batch, 1, 32, 32)   grey thumbnail, values in [0, 1]
    -> MatMul(C8, x)           C8 = first 8 rows of the orthonormal 32-point DCT-II matrix
    -> MatMul(., C8^T)         -> (batch, 1, 8, 8): the lowest 8x8 spatial frequencies
    -> Flatten                 -> (batch, 64)
    -> Gather(1..63)           drop the DC term, so overall brightness does not count
    -> Mul(weights)            weight (u^2 + v^2)^(1/4): natural images have ~1/f spectra, so
                               without it the two or three lowest frequencies dominate the
                               cosine and unrelated photos with similar gradients look alike
    -> embedding (batch, 63)

Only 8 of the 32 basis rows are multiplied, so the cost is ~20 kFLOP per image. Measured on 18
photos from the scikit-image/scikit-learn wheels (cosine of the embedding): half-size copies >= 0.999,
JPEG quality 30 >= 0.995, brightness x1.3 >= 0.96, distinct photos <= 0.90; crops are not
recognised reliably (an 85% centre crop scored as low as 0.25), which is what the learned default
model is for.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "python" / "dupscope" / "models" / "dct32.onnx"

SIZE = 32  # thumbnail side
KEEP = 8  # low-frequency block side


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``C`` (rows are basis vectors), so ``C @ x @ C.T`` is the 2-D DCT."""
    k = np.arange(n)
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c


def frequency_weights(keep: int) -> np.ndarray:
    """Per-coefficient weights of the kept block without DC, flattened row-major."""
    u, v = np.meshgrid(np.arange(keep), np.arange(keep), indexing="ij")
    return ((u**2 + v**2) ** 0.25).ravel()[1:]


def build(out: Path) -> str:
    """Write the ONNX file to ``out`` and return its sha256."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = dct_matrix(SIZE)[:KEEP].astype(np.float32)
    inits = [
        numpy_helper.from_array(c, "dct_rows"),
        numpy_helper.from_array(np.ascontiguousarray(c.T), "dct_cols"),
        numpy_helper.from_array(np.arange(1, KEEP * KEEP, dtype=np.int64), "ac_index"),
        numpy_helper.from_array(frequency_weights(KEEP).astype(np.float32), "freq_weight"),
    ]
    nodes = [
        helper.make_node("MatMul", ["dct_rows", "input"], ["rows"], name="dct_vertical"),
        helper.make_node("MatMul", ["rows", "dct_cols"], ["block"], name="dct_horizontal"),
        helper.make_node("Flatten", ["block"], ["coeffs"], axis=1, name="flatten"),
        helper.make_node("Gather", ["coeffs", "ac_index"], ["ac"], axis=1, name="drop_dc"),
        helper.make_node("Mul", ["ac", "freq_weight"], ["embedding"], name="weight"),
    ]
    graph = helper.make_graph(
        nodes,
        "dupscope_dct32",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", KEEP * KEEP - 1])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="dupscope tools/build_dct_model.py",
        doc_string="Low-frequency 2-D DCT of a 32x32 grey thumbnail (DC dropped, (u^2+v^2)^0.25 weights).",
    )
    # Pin the IR version so that the bytes do not change with the installed onnx package and
    # older onnxruntime builds can still load the file.
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    out.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def verify(path: Path) -> float:
    """Compare onnxruntime's output with a float64 numpy DCT on random inputs; return the max error."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    x = rng.random((7, 1, SIZE, SIZE), dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["embedding"], {"input": x})[0]
    c = dct_matrix(SIZE)
    full = np.einsum("ij,bjk,lk->bil", c, x[:, 0].astype(np.float64), c)
    ref = full[:, :KEEP, :KEEP].reshape(len(x), -1)[:, 1:] * frequency_weights(KEEP)
    return float(np.abs(got - ref).max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sha = build(args.output)
    err = verify(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    print(f"sha256: {sha}")
    print(f"max |onnxruntime - float64 numpy|: {err:.3g}")
    return 0 if err < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
