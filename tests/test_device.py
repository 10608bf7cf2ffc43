"""--device parsed once (dupscope.device) and the messages when no GPU is usable."""

from __future__ import annotations

import numpy as np
import pytest

import dupscope
from dupscope.device import Device, gpu_status, parse_device
from dupscope.errors import DeviceError

NO_GPU = not gpu_status()[0]


@pytest.mark.parametrize("text,kind,index,engine", [
    ("auto", "auto", 0, "auto"), ("CPU", "cpu", 0, "cpu"), ("cuda", "cuda", 0, "cuda"),
    ("cuda:3", "cuda", 3, "cuda:3"), ("gpu", "cuda", 0, "cuda"), (None, "auto", 0, "auto"),
])
def test_parse(text, kind, index, engine):
    d = parse_device(text)
    assert (d.kind, d.index, d.engine) == (kind, index, engine)
    assert parse_device(d) is d


@pytest.mark.parametrize("bad", ["tpu", "cuda:", "cuda:-1", "cpu:1", "cuda:x", ""])
def test_bad_device_names(bad):
    with pytest.raises(DeviceError, match="auto, cpu, cuda or cuda:N"):
        parse_device(bad)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a usable GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_without_a_gpu_the_message_says_so_first(device, tmp_path):
    with pytest.raises(DeviceError, match=r"^--device cuda(:1)?: (no usable GPU was found|this dupscope was built without CUDA)"):
        dupscope.topk(np.ones((5, 4), np.float32), 2, device=device)
    from dupscope.embed import create_session
    from dupscope.models import get_model

    with pytest.raises(DeviceError, match="no usable GPU|built without CUDA") as exc:
        create_session(get_model("dct32"), device=device)
    assert "onnxruntime" not in str(exc.value).split(";")[0]  # the GPU first, the install second
    assert dupscope.topk(np.ones((5, 4), np.float32), 2, device="auto")[0].shape == (5, 2)  # auto falls back


@pytest.mark.gpu
def test_engine_honours_the_gpu_index():
    from dupscope import _core

    count = _core.cuda_device_count()
    e = np.random.default_rng(0).standard_normal((300, 32)).astype(np.float32)
    cpu = dupscope.topk(e, 5, device="cpu")
    gpu = dupscope.topk(e, 5, device=f"cuda:{count - 1}")
    assert (cpu[0] == gpu[0]).mean() > 0.99
    with pytest.raises(DeviceError, match="usable GPU"):
        dupscope.topk(e, 5, device=f"cuda:{count}")
    assert str(Device("cuda", count - 1)).startswith("cuda")
