"""Make the int8 version of the shipped network: ``efficientnet_lite0_int8.onnx``.

Static quantisation with onnxruntime's tools (``onnxruntime.quantization.quantize_static``):
weights int8 per output channel, activations uint8 with ranges calibrated on real photos, in the
QDQ format, so that onnxruntime runs the convolutions with integer kernels (VNNI where the CPU
has it). Both outputs of the float file (``embedding``, ``dupscope_v3``) are kept, so the int8
file serves the models ``efficientnet-lite0-int8`` and ``dupscope-v3-int8``.

The calibration photos are the sample photos that ship inside Python packages (scikit-image's
``skimage/data``, scikit-learn's ``china.jpg`` / ``flower.jpg``, matplotlib's sample data), never
the benchmark's images, each also as a centre crop, a mirror and a darker copy, decoded and
resized exactly as phase 1 does (``dupscope.images.load_image``, ``dupscope.embed.preprocess``).
Those packages are needed only here (``pip install scikit-image scikit-learn matplotlib``).

    python tools/quantize_model.py            # writes python/dupscope/models/efficientnet_lite0_int8.onnx

Prints the file's sha256 (to be recorded in models/__init__.py and PROVENANCE.md) and the
cosine between the float and int8 outputs on the calibration photos.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "python" / "dupscope" / "models"
SOURCE = MODELS / "efficientnet_lite0.onnx"
DEFAULT_OUT = MODELS / "efficientnet_lite0_int8.onnx"
SUFFIXES = (".png", ".jpg", ".jpeg")


def calibration_photos() -> list[Path]:
    """Sample photos shipped inside installed Python packages (sorted, so runs are repeatable)."""
    found: list[Path] = []
    import importlib.util

    for package, sub in (("skimage", "data"), ("sklearn", "datasets/images"), ("matplotlib", "mpl-data/sample_data")):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent / sub
        found += [p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES]
    return sorted(found)


def calibration_inputs(photos: list[Path], spec) -> np.ndarray:
    """The photos, a centre crop, a mirror and a darker copy of each, as the network's input."""
    from PIL import Image, ImageEnhance

    from dupscope.embed import preprocess
    from dupscope.images import load_image

    pixels = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, path in enumerate(photos):
            try:
                img = Image.open(path).convert("RGB")
            except Exception:  # a sample that is not a photo (palette masks, 16-bit data)
                continue
            if min(img.size) < 64:
                continue
            w, h = img.size
            variants = [img, img.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
                        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ImageEnhance.Brightness(img).enhance(0.6)]
            for v, im in enumerate(variants):
                out = Path(tmp) / f"{n}-{v}.png"
                im.save(out)
                loaded = load_image(out, (spec.height, spec.width), colour=spec.colour, resize=spec.resize)
                if loaded.pixels is not None:
                    pixels.append(loaded.pixels)
    return preprocess(pixels, spec)


def quantize(out: Path = DEFAULT_OUT, source: Path = SOURCE) -> tuple[str, float, int]:
    """Write the int8 network to ``out``; returns its sha256, the smallest cosine between the
    float and int8 ``dupscope_v3`` outputs on the calibration inputs, and their number."""
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from dupscope.models import get_model

    spec = get_model("dupscope-v3")
    photos = calibration_photos()
    if len(photos) < 8:
        raise SystemExit("too few calibration photos: pip install scikit-image scikit-learn matplotlib")
    x = calibration_inputs(photos, spec)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([x[i:i + 8] for i in range(0, len(x), 8)])

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {spec.input_name: b}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    opts = ort.SessionOptions()
    ref = ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
    a = ref.run([spec.output_name], {spec.input_name: x})[0]
    b = q.run([spec.output_name], {spec.input_name: x})[0]
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return hashlib.sha256(out.read_bytes()).hexdigest(), float(cos.min()), len(x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    sha, cos, n = quantize(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes), sha256 {sha}")
    print(f"float vs int8 dupscope_v3 output on {n} calibration inputs: minimum cosine {cos:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
