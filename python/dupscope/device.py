"""Where work runs: ``--device`` parsed once into a :class:`Device` that every stage receives.

``"auto"`` uses a GPU when one is usable, ``"cpu"`` never does, ``"cuda"`` / ``"cuda:N"`` require
GPU ``N`` (0 by default) for both the model (onnxruntime's CUDA provider) and the similarity
engine. When no GPU is usable, the message says that first, and only then what to install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from .errors import DeviceError

__all__ = ["Device", "parse_device", "gpu_status", "no_gpu_message", "require_gpu"]

_PATTERN = re.compile(r"^(auto|cpu|cuda|gpu)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` is ``"auto"``, ``"cpu"`` or ``"cuda"``; ``index`` the GPU."""

    kind: str = "auto"
    index: int = 0

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" and self.index else self.kind

    @property
    def engine(self) -> str:
        """The name the compiled engine takes: ``"cpu"``, ``"auto"``, ``"cuda"`` or ``"cuda:N"``."""
        return str(self)


DeviceLike = Union[str, Device, None]


def parse_device(value: DeviceLike) -> Device:
    """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``"gpu"`` as ``"cuda"``) or a Device.

    Raises
    ------
    dupscope.errors.DeviceError
        Anything else.
    """
    if isinstance(value, Device):
        return value
    text = "auto" if value is None else str(value).strip().lower()
    m = _PATTERN.match(text)
    if not m or (m.group(2) is not None and m.group(1) in ("auto", "cpu")):
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N (N the GPU number), not {value!r}")
    kind = "cuda" if m.group(1) == "gpu" else m.group(1)
    return Device(kind, int(m.group(2) or 0))


def gpu_status() -> tuple[bool, str]:
    """(usable, why not): whether this machine has a GPU the compiled core can use."""
    from . import _core

    ok, why = _core.cuda_available()
    return bool(ok), str(why)


def no_gpu_message(device: Device, why: str) -> str:
    """The one-line explanation when ``device`` asks for a GPU that cannot be used."""
    if "built without CUDA" in why:
        return (f"--device {device}: this dupscope was built without CUDA ({why}); reinstall it on a machine "
                "with nvcc, or use --device cpu")
    detail = why.replace("no usable CUDA device: ", "")
    hint = ""
    if "driver" in detail.lower():
        hint = " (the NVIDIA driver is missing or older than this build needs)"
    return f"--device {device}: no usable GPU was found on this machine{hint}: {detail}; use --device cpu"


def require_gpu(device: Device) -> None:
    """Raise :class:`DeviceError` when ``device`` is ``cuda``/``cuda:N`` and that GPU is not usable."""
    if device.kind != "cuda":
        return
    ok, why = gpu_status()
    if not ok:
        raise DeviceError(no_gpu_message(device, why))
    from . import _core

    count = _core.cuda_device_count()
    if device.index >= count:
        raise DeviceError(f"--device {device}: this machine has {count} usable GPU(s), numbered 0 to {count - 1}")
