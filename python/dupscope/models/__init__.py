"""Built-in embedding models and the preprocessing each one expects.

A :class:`ModelSpec` says everything the decode -> embed pipeline needs to feed a model: which ONNX
file, the input size and layout, colour, normalisation and how images are resized. Built-in models
are ONNX files shipped inside the package (see ``PROVENANCE.md`` next to this file); any other ONNX
file can be used by passing its path, in which case the input size and layout are read from the
model's input and checked with a dry run before any image is decoded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelError
from ..fusion import DUPSCOPE_V3, Fusion

__all__ = ["ModelSpec", "ModelError", "get_model", "builtin_models", "file_sha256", "DEFAULT_MODEL", "default_model"]

_HERE = Path(__file__).resolve().parent

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESIZE_MODES = ("stretch", "crop")
COLOURS = ("rgb", "gray")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class ModelSpec:
    """An embedding model and its preprocessing.

    Attributes
    ----------
    name : str
        Registry name, or the file name for a user model.
    path : str
        Absolute path of the ONNX file.
    sha256 : str
        Hex digest of the ONNX file (recorded in the HDF5 file's ``model_sha256``).
    height, width : int
        Spatial input size the image is resized to.
    layout : {"NCHW", "NHWC"}
        Input tensor layout.
    mean, std : tuple of float
        Per-channel normalisation applied to pixel values scaled to [0, 1]:
        ``(pixel / 255 - mean) / std``. One value per channel.
    resize : {"stretch", "crop"}
        ``"stretch"`` resizes the whole image to ``height x width`` ignoring its aspect ratio, so
        nothing is cut off (crops and borders of a copy still overlap the original's content);
        ``"crop"`` scales the shorter side to fit and cuts the centre.
    colour : {"rgb", "gray"}
        Three RGB channels, or one luminance channel.
    input_name, output_name : str
        Tensor names in the ONNX graph.
    input_dtype : str
        NumPy dtype name of the input (``float32``, ``float16`` or ``uint8``; uint8 inputs get raw
        pixels without normalisation).
    batch : int or None
        Fixed batch size of the model, None when the batch axis is dynamic.
    dim : int or None
        Embedding dimension, when known.
    builtin : bool
        Whether this is one of the shipped models.
    fusion : dupscope.fusion.Fusion or None
        For a model whose output is several embeddings side by side (``dupscope-v3``): how they
        are normalised against the data set and joined after embedding
        (:func:`dupscope.fusion.fuse_embeddings`). None: the output is used as it is.
    variant_of : str or None
        For another file of a built-in network (the int8 ``dupscope-v3-int8``): the model whose
        tuned settings it shares (candidate bar, threshold grid; see :attr:`family`).
    """

    name: str
    path: str
    sha256: str
    height: int
    width: int
    layout: str = "NCHW"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: str = "stretch"
    colour: str = "rgb"
    input_name: str = "input"
    output_name: str = "embedding"
    input_dtype: str = "float32"
    batch: int | None = None
    dim: int | None = None
    builtin: bool = False
    fusion: Fusion | None = None
    variant_of: str | None = None

    @property
    def family(self) -> str:
        """The name per-model settings are looked up by: :attr:`variant_of`, else :attr:`name`."""
        return self.variant_of or self.name

    @property
    def channels(self) -> int:
        """Number of input channels (3 for RGB, 1 for grey)."""
        return 3 if self.colour == "rgb" else 1

    def describe(self) -> str:
        """One line for logs: name, input and preprocessing."""
        return (
            f"{self.name} ({self.layout} {self.channels}x{self.height}x{self.width} {self.colour}, "
            f"resize={self.resize}, dim={self.dim if self.dim is not None else '?'})"
        )


# Registry of shipped models. sha256 values are those of the committed files (PROVENANCE.md);
# get_model() re-checks them so that a damaged installation fails loudly instead of silently
# producing different similarities.
_EFFICIENTNET_LITE0 = ModelSpec(
    name="efficientnet-lite0",
    path=str(_HERE / "efficientnet_lite0.onnx"),
    sha256="6864415b47aca5ff7365305260211956ac89735f63df39a9729ebf8b72a47f88",
    height=224,
    width=224,
    layout="NCHW",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    resize="stretch",
    colour="rgb",
    dim=1280,
    builtin=True,
)
_BUILTIN: dict[str, ModelSpec] = {
    "efficientnet-lite0": _EFFICIENTNET_LITE0,
    "dct32": ModelSpec(
        name="dct32",
        path=str(_HERE / "dct32.onnx"),
        sha256="ca8bf0c4712cf3cb9f11df73fbaf633e17528efb42f5d2534c0765c823c8ec1c",
        height=32,
        width=32,
        layout="NCHW",
        mean=(0.0,),
        std=(1.0,),
        resize="stretch",
        colour="gray",
        dim=63,
        builtin=True,
    ),
    # The copy detector: a second output of the same network file (tools/build_dup_model.py
    # adds it), the head max-pooled (1280 columns) next to the max-pooled expansion layer of
    # block 9 (672 columns); joined per data set by dupscope.fusion.DUPSCOPE_V3. Same file,
    # same input: only the output read differs, so the package carries the weights once.
    "dupscope-v3": replace(
        _EFFICIENTNET_LITE0,
        name="dupscope-v3",
        output_name="dupscope_v3",
        dim=1952,
        fusion=DUPSCOPE_V3,
    ),
}
# The same network quantised to int8 (tools/quantize_model.py: static, calibrated on sample photos
# that ship in Python packages, weights per channel): about half the network's time on a CPU with
# VNNI, its accuracy in benchmarks/RESULTS.md. Its two outputs are those of the float file.
_INT8 = dict(path=str(_HERE / "efficientnet_lite0_int8.onnx"),
             sha256="b1fc3dff711292c05464124efaeacfe9c0f5a895bad8b1a87cfe7668124db27f")
_BUILTIN["dupscope-v3-int8"] = replace(_BUILTIN["dupscope-v3"], name="dupscope-v3-int8", variant_of="dupscope-v3", **_INT8)
_BUILTIN["efficientnet-lite0-int8"] = replace(_EFFICIENTNET_LITE0, name="efficientnet-lite0-int8",
                                              variant_of="efficientnet-lite0", **_INT8)
_ALIASES = {"efficientnet": "efficientnet-lite0", "dct": "dct32",
            "dupscope": "dupscope-v3"}

#: The default: on the real-photo accuracy benchmark it beats the plain network (average
#: precision and recall at precision 0.95 in benchmarks/ACCURACY.md) at about its time.
DEFAULT_MODEL = "dupscope-v3"


def default_model(device="auto") -> str:
    """The model a run uses when none is named.

    ``dupscope-v3-int8`` where the network runs on a CPU with int8 dot-product instructions
    (``build_info()["cpu_int8_dot"]``: AVX512-VNNI or AVX-VNNI): there it takes about half the
    float network's time at no loss of accuracy on the benchmarks (benchmarks/RESULTS.md, issue
    15). Else, and wherever a GPU runs the network (``device`` ``cuda``, or ``auto`` with a usable
    GPU), :data:`DEFAULT_MODEL` (``dupscope-v3``). Name a model to have the same one everywhere.
    """
    from .. import _core
    from ..device import gpu_status, parse_device

    d = parse_device(device)
    if d.kind == "cuda" or (d.kind == "auto" and gpu_status()[0]):
        return DEFAULT_MODEL
    return DEFAULT_MODEL + "-int8" if _core.build_info().get("cpu_int8_dot") else DEFAULT_MODEL


def builtin_models() -> list[str]:
    """Names of the shipped models."""
    return sorted(_BUILTIN)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _per_channel(values: Sequence[float] | float | None, channels: int, what: str, src: str):
    if values is None:
        return None
    vals = (float(values),) if np.isscalar(values) else tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ModelError(f"{src}: {what} has {len(vals)} values but the model takes {channels} channels")
    if what == "std" and any(v == 0 for v in vals):
        raise ModelError(f"{src}: std must not contain 0")
    return vals


def get_model(
    name_or_path: str | os.PathLike | ModelSpec = DEFAULT_MODEL,
    *,
    input_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    resize: str | None = None,
    layout: str | None = None,
    check: bool = True,
) -> ModelSpec:
    """Look up a built-in model by name, or inspect a user ONNX file.

    Parameters
    ----------
    name_or_path : str, path or ModelSpec
        ``"dupscope-v3"`` (default), ``"efficientnet-lite0"``, ``"dct32"``, or the path of an ONNX file. A
        :class:`ModelSpec` is returned unchanged (after applying overrides).
    input_size : int or (height, width), optional
        Spatial size for models whose input has dynamic height/width; for models with fixed
        dimensions it must agree with them.
    mean, std : sequence of float, optional
        Normalisation of ``pixel / 255`` per channel (one value is broadcast). User models default
        to ImageNet's values for RGB input and 0.5/0.5 for grey input.
    resize : {"stretch", "crop"}, optional
        How images are fitted to the input size (see :class:`ModelSpec`).
    layout : {"NCHW", "NHWC"}, optional
        Forces the layout when it cannot be told from the input shape.
    check : bool
        For user files: run the model once on a zero input to check the output shape.

    Returns
    -------
    ModelSpec

    Raises
    ------
    ModelError
        Unknown name, missing or damaged file, or a model dupscope cannot feed (input not 4-D,
        channels other than 1 or 3, unknown spatial size, output not one vector per image).
    """
    if isinstance(name_or_path, ModelSpec):
        spec = name_or_path
    else:
        key = os.fspath(name_or_path)
        key = default_model() if key == "default" else _ALIASES.get(key, key)
        if key in _BUILTIN:
            spec = _BUILTIN[key]
            if not os.path.isfile(spec.path):
                raise ModelError(f"built-in model {key!r} is missing its file {spec.path}; reinstall dupscope")
            actual = file_sha256(spec.path)
            if actual != spec.sha256:
                raise ModelError(
                    f"built-in model file {spec.path} is damaged (sha256 {actual}, expected {spec.sha256}); "
                    "reinstall dupscope"
                )
        elif key.lower().endswith(".onnx") or os.path.exists(key):
            spec = _inspect_user_model(key, input_size=input_size, layout=layout, check=check)
        else:
            raise ModelError(
                f"unknown model {key!r}: use one of {', '.join(builtin_models())} or the path of an .onnx file"
            )

    changes: dict = {}
    if input_size is not None:
        h, w = (input_size, input_size) if np.isscalar(input_size) else tuple(input_size)
        if (int(h), int(w)) != (spec.height, spec.width):
            if spec.builtin:
                raise ModelError(
                    f"model {spec.name!r} has a fixed input size {spec.height}x{spec.width}; "
                    f"--input-size {h}x{w} does not fit it"
                )
            changes.update(height=int(h), width=int(w))
    if mean is not None:
        changes["mean"] = _per_channel(mean, spec.channels, "mean", spec.name)
    if std is not None:
        changes["std"] = _per_channel(std, spec.channels, "std", spec.name)
    if resize is not None:
        if resize not in RESIZE_MODES:
            raise ModelError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
        changes["resize"] = resize
    if layout is not None and spec.builtin and layout != spec.layout:
        raise ModelError(f"model {spec.name!r} takes {spec.layout} input; layout {layout!r} does not fit it")
    return replace(spec, **changes) if changes else spec


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


def _fixed(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _inspect_user_model(path: str, *, input_size, layout, check: bool) -> ModelSpec:
    import onnxruntime as ort

    src = os.path.abspath(path)
    if not os.path.isfile(src):
        raise ModelError(f"model file {path} does not exist")
    opts = ort.SessionOptions()
    # Inspection only: skip graph optimisation so large models open quickly.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None

    inputs = sess.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelError(f"{path}: the model has {len(inputs)} inputs ({names}); dupscope feeds exactly one image tensor")
    inp = inputs[0]
    if inp.type not in _ORT_DTYPES:
        raise ModelError(f"{path}: input {inp.name!r} is {inp.type}; dupscope feeds float32, float16 or uint8")
    shape = list(inp.shape)
    if len(shape) != 4:
        raise ModelError(
            f"{path}: input {inp.name!r} has shape {shape}; dupscope needs a 4-D image batch "
            "(N, C, H, W) or (N, H, W, C)"
        )
    a, b, c = shape[1], shape[2], shape[3]
    if layout is None:
        if a in (1, 3) and c not in (1, 3):
            layout = "NCHW"
        elif c in (1, 3) and a not in (1, 3):
            layout = "NHWC"
        elif a in (1, 3):
            layout = "NCHW"  # e.g. (N, 3, 3, 3): ambiguous, NCHW is the ONNX convention
        else:
            raise ModelError(
                f"{path}: cannot tell the channel axis of input shape {shape} (need 1 or 3 channels "
                "first or last); pass layout='NCHW' or 'NHWC'"
            )
    if layout not in LAYOUTS:
        raise ModelError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    ch, h, w = (a, b, c) if layout == "NCHW" else (c, a, b)
    if ch not in (1, 3):
        raise ModelError(f"{path}: input has {ch} channels ({layout} shape {shape}); dupscope feeds 1 (grey) or 3 (RGB)")
    h, w = _fixed(h), _fixed(w)
    if input_size is not None:
        ih, iw = (input_size, input_size) if np.isscalar(input_size) else tuple(input_size)
        if (h is not None and h != ih) or (w is not None and w != iw):
            raise ModelError(f"{path}: input size {ih}x{iw} does not match the model's fixed input {shape}")
        h, w = int(ih), int(iw)
    if h is None or w is None:
        raise ModelError(f"{path}: the input's height/width are dynamic ({shape}); give the size with --input-size")

    colour = "rgb" if ch == 3 else "gray"
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if colour == "rgb" else ((0.5,), (0.5,))
    outputs = sess.get_outputs()
    spec = ModelSpec(
        name=os.path.basename(src),
        path=src,
        sha256=file_sha256(src),
        height=h,
        width=w,
        layout=layout,
        mean=mean,
        std=std,
        colour=colour,
        input_name=inp.name,
        output_name=outputs[0].name,
        input_dtype=_ORT_DTYPES[inp.type],
        batch=_fixed(shape[0]),
        builtin=False,
    )
    if check:
        x_shape = (spec.batch or 1, ch, h, w) if layout == "NCHW" else (spec.batch or 1, h, w, ch)
        try:
            out = sess.run([spec.output_name], {inp.name: np.zeros(x_shape, dtype=spec.input_dtype)})[0]
        except Exception as exc:
            raise ModelError(f"{path}: the model failed on a {x_shape} input ({exc})") from None
        out = np.asarray(out)
        if out.ndim < 2 or out.shape[0] != x_shape[0] or any(s != 1 for s in out.shape[2:]):
            raise ModelError(
                f"{path}: output {spec.output_name!r} has shape {list(out.shape)} for a batch of {x_shape[0]}; "
                "dupscope needs one embedding vector per image, (N, D) or (N, D, 1, 1) - add a pooling "
                "layer to the model"
            )
        if not np.issubdtype(out.dtype, np.floating):
            raise ModelError(f"{path}: output {spec.output_name!r} is {out.dtype}, not floating point")
        spec = replace(spec, dim=int(out.shape[1]))
    return spec
