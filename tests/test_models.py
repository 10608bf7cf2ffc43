"""Model registry: built-in files, user ONNX files and the errors for models that do not fit."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dupscope import models
from dupscope.embed import create_session, embed_images
from dupscope.models import ModelError, file_sha256, get_model

import imagegen


def test_builtin_models_match_their_checksums():
    for name in models.builtin_models():
        spec = get_model(name)
        assert spec.builtin and spec.sha256 == file_sha256(spec.path)
        sess, device = create_session(spec, device="cpu")
        (inp,) = sess.get_inputs()
        assert inp.name == spec.input_name
        assert inp.shape[1:] == [spec.channels, spec.height, spec.width]
        outputs = {o.name: o.shape for o in sess.get_outputs()}
        assert outputs[spec.output_name][1] == spec.dim
        assert device == "cpu"
    assert get_model("dct").name == "dct32"  # alias
    assert get_model().name == models.DEFAULT_MODEL == "dupscope-v3"
    assert get_model("default").name == models.default_model()


def test_default_model_is_the_int8_network_where_the_cpu_has_vnni(monkeypatch):
    """No model named: the int8 network on a CPU with int8 dot products, the float one without
    them and wherever a GPU runs the network."""
    import dupscope._core as core
    from dupscope import device as device_mod

    info = core.build_info()
    assert isinstance(info["cpu_int8_dot"], list)
    for flags, on_cpu in (([], "dupscope-v3"), (["avx512_vnni"], "dupscope-v3-int8"), (["avx_vnni"], "dupscope-v3-int8")):
        monkeypatch.setattr(core, "build_info", lambda flags=flags: {**info, "cpu_int8_dot": flags})
        monkeypatch.setattr(device_mod, "gpu_status", lambda: (False, "no GPU here"))
        assert models.default_model("cpu") == models.default_model("auto") == on_cpu
        assert models.default_model("cuda") == models.default_model("cuda:1") == "dupscope-v3"
        monkeypatch.setattr(device_mod, "gpu_status", lambda: (True, ""))
        assert models.default_model("auto") == "dupscope-v3" and models.default_model("cpu") == on_cpu


def test_damaged_builtin_file_is_refused(tmp_path, monkeypatch):
    good = get_model("dct32")
    bad = tmp_path / "dct32.onnx"
    shutil.copy(good.path, bad)
    with open(bad, "ab") as fh:
        fh.write(b"\0")
    monkeypatch.setitem(models._BUILTIN, "dct32", dataclasses.replace(good, path=str(bad)))
    with pytest.raises(ModelError, match="damaged"):
        get_model("dct32")


def test_unknown_name():
    with pytest.raises(ModelError, match="unknown model 'resnet9000'.*dct32.*efficientnet-lite0"):
        get_model("resnet9000")


def pooled_model(path, in_shape, *, layout="NCHW", out="pooled", fixed_batch=None):
    """A small real ONNX model: mean over space of the pixels, then a fixed linear map to 5-d."""
    batch = fixed_batch if fixed_batch is not None else "n"
    inp = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch] + list(in_shape))
    nodes = []
    x = "pixels"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    channels = in_shape[0] if layout == "NCHW" else in_shape[-1]
    weight = np.arange(channels * 5, dtype=np.float32).reshape(channels, 5) + 1
    inits = [numpy_helper.from_array(weight, "w")]
    if out == "pooled":
        nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]),
                  helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
                  helper.make_node("MatMul", ["flat", "w"], ["feat"])]
        out_info = helper.make_tensor_value_info("feat", TensorProto.FLOAT, [batch, 5])
    else:  # a feature map: not one vector per image
        nodes.append(helper.make_node("Identity", [x], ["feat"]))
        out_info = helper.make_tensor_value_info("feat", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "toy", [inp], [out_info], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def test_user_model_nchw_and_nhwc(tmp_path):
    nchw = get_model(pooled_model(tmp_path / "a.onnx", [3, 40, 30]))
    assert (nchw.layout, nchw.height, nchw.width, nchw.colour, nchw.dim) == ("NCHW", 40, 30, "rgb", 5)
    assert nchw.input_name == "pixels" and nchw.output_name == "feat"
    assert nchw.sha256 == file_sha256(tmp_path / "a.onnx") and not nchw.builtin
    assert nchw.mean == models.IMAGENET_MEAN  # RGB default

    nhwc = get_model(pooled_model(tmp_path / "b.onnx", [24, 24, 1], layout="NHWC"), mean=0.5, std=[0.25])
    assert (nhwc.layout, nhwc.height, nhwc.width, nhwc.colour) == ("NHWC", 24, 24, "gray")
    assert nhwc.mean == (0.5,) and nhwc.std == (0.25,)


def test_float16_embeddings(tmp_path):
    """embed_images(dtype="float16") keeps the rows at half the memory; a row float16 cannot hold
    fails with a message instead of turning into inf."""
    path = pooled_model(tmp_path / "m.onnx", [16, 16, 3], layout="NHWC")
    paths = [str(imagegen.save(imagegen.scene(s, (16, 16)), tmp_path / f"{s}.png")) for s in range(3)]
    spec = get_model(path, mean=0.0, std=1.0)
    f32 = embed_images(paths, spec, device="cpu")
    f16 = embed_images(paths, spec, device="cpu", dtype="float16")
    assert f32.embeddings.dtype == np.float32 and f16.embeddings.dtype == np.float16 and f16.ok.all()
    np.testing.assert_allclose(f16.embeddings.astype(np.float32), f32.embeddings, rtol=1e-3)
    huge = get_model(path, mean=0.0, std=1e-4)  # pixel / 1e-4 times weights up to 15: > 65504
    big = embed_images(paths, huge, device="cpu", dtype="float16")
    assert not big.ok.any() and not big.embeddings.any()
    assert all("beyond float16's range" in e for e in big.errors), big.errors
    assert embed_images(paths, huge, device="cpu").ok.all()  # float32 holds them
    with pytest.raises(ValueError, match="float32 or float16"):
        embed_images(paths, spec, device="cpu", dtype="int8")


def test_user_model_embeds_and_matches_numpy(tmp_path):
    """End to end through a user NHWC model: the output equals the same maths done in numpy."""
    path = pooled_model(tmp_path / "m.onnx", [16, 16, 3], layout="NHWC")
    spec = get_model(path, mean=0.0, std=1.0)
    imgs = [imagegen.save(imagegen.scene(s, (16, 16)), tmp_path / f"{s}.png") for s in range(3)]
    res = embed_images([str(p) for p in imgs], spec, device="cpu")
    w = np.arange(15, dtype=np.float32).reshape(3, 5) + 1
    from PIL import Image
    for i, p in enumerate(imgs):
        with Image.open(p) as im:
            px = np.asarray(im.convert("RGB"), np.float32) / 255
        np.testing.assert_allclose(res.embeddings[i], px.mean((0, 1)) @ w, rtol=1e-5)


def test_fixed_batch_model_is_padded(tmp_path):
    spec = get_model(pooled_model(tmp_path / "fixed.onnx", [3, 8, 8], fixed_batch=2))
    assert spec.batch == 2
    imgs = [str(imagegen.save(imagegen.noise(s, (8, 8)), tmp_path / f"{s}.png")) for s in range(3)]
    res = embed_images(imgs, spec, batch_size=32, device="cpu")  # 3 images: last batch padded
    assert res.ok.all() and res.embeddings.shape == (3, 5)
    single = embed_images(imgs[2:], spec, device="cpu")
    np.testing.assert_allclose(res.embeddings[2], single.embeddings[0], rtol=1e-6)


def test_dynamic_size_needs_input_size(tmp_path):
    path = pooled_model(tmp_path / "dyn.onnx", [3, "h", "w"])
    with pytest.raises(ModelError, match="dynamic.*--input-size"):
        get_model(path)
    spec = get_model(path, input_size=(48, 64))
    assert (spec.height, spec.width, spec.dim) == (48, 64, 5)
    with pytest.raises(ModelError, match="fixed input size 224x224"):
        get_model("efficientnet-lite0", input_size=100)


def test_models_that_do_not_fit(tmp_path):
    not4d = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 100])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 100])]),
        opset_imports=[helper.make_opsetid("", 17)])
    not4d.ir_version = 8
    onnx.save(not4d, tmp_path / "flat.onnx")
    with pytest.raises(ModelError, match="flat.onnx.*4-D"):
        get_model(tmp_path / "flat.onnx")

    fmap = pooled_model(tmp_path / "fmap.onnx", [3, 8, 8], out="map")
    with pytest.raises(ModelError, match=r"one embedding vector per image.*\[1, 3, 8, 8\]|\[1, 3, 8, 8\].*one embedding"):
        get_model(fmap)

    two = pooled_model(tmp_path / "two.onnx", [2, 8, 8])
    with pytest.raises(ModelError, match="channel"):
        get_model(two)

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        get_model(junk)
    with pytest.raises(ModelError, match="does not exist"):
        get_model(tmp_path / "absent.onnx")


# ---- dupscope-v3: two pooled feature maps of the network, made by tools/build_dup_model.py -----

HEAD = "/_swish_1/Clip_output_0"
BLOCK9X = "/_blocks.9/_swish/Clip_output_0"  # block 9's expansion activation


def _feature_session():
    """The shipped network file with the head activation and block 9's expansion as more outputs."""
    import onnxruntime as ort

    m = onnx.load(get_model("efficientnet-lite0").path)
    m.graph.output.append(helper.make_tensor_value_info(HEAD, TensorProto.FLOAT, ["n", 1280, "h", "w"]))
    m.graph.output.append(helper.make_tensor_value_info(BLOCK9X, TensorProto.FLOAT, ["n", 672, "h", "w"]))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _v3_inputs(tmp_path):
    """Real decoded pictures through dupscope's own preprocessing."""
    from dupscope.embed import preprocess
    from dupscope.images import load_image

    spec = get_model("dupscope-v3")
    imgs = [imagegen.scene(s, (200, 150)) for s in range(4)]
    paths = [str(imagegen.save(im, tmp_path / f"v3_{k}.png")) for k, im in enumerate(imgs)]
    pixels = [load_image(p, (spec.height, spec.width), colour="rgb").pixels for p in paths]
    return spec, preprocess(pixels, spec), paths


def test_dupscope_v3_matches_the_plain_network_and_numpy(tmp_path):
    spec, x, _ = _v3_inputs(tmp_path)
    assert spec.dim == 1952 and spec.fusion is not None and spec.fusion.dim == 1952
    sess, _ = create_session(spec, device="cpu")
    got = sess.run([spec.output_name], {spec.input_name: x})[0]
    plain, head, mid = _feature_session().run(["embedding", HEAD, BLOCK9X], {"input": x})
    head = head.astype(np.float64)
    # The plain output is the average of the same head map: the surgery kept the network.
    np.testing.assert_allclose(head.mean(axis=(2, 3)), plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())
    ref_head = head.max(axis=(2, 3))
    ref_mid = mid.astype(np.float64).max(axis=(2, 3))
    assert mid.shape[1:] == (672, 14, 14) and got.shape == (4, 1952)
    np.testing.assert_allclose(got[:, :1280], ref_head, rtol=1e-5, atol=1e-6 * np.abs(ref_head).max())
    np.testing.assert_allclose(got[:, 1280:], ref_mid, rtol=1e-4, atol=1e-5 * np.abs(ref_mid).max())


def test_efficientnet_lite0_uses_relu6_activations():
    """EfficientNet-Lite has ReLU6 everywhere; an export with Swish (Sigmoid * x) gave features in
    which a JPEG copy of a photo fell to cosine 0.56 with its original."""
    m = onnx.load(get_model("efficientnet-lite0").path)
    ops = {n.op_type for n in m.graph.node}
    assert "Sigmoid" not in ops and "Clip" in ops
    clips = [n for n in m.graph.node if n.op_type == "Clip"]
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"}
    for n in clips:
        lo, hi = (float((inits.get(i) if i in inits else consts[i])) for i in n.input[1:3])
        assert (lo, hi) == (0.0, 6.0)


def test_dupscope_v3_file_is_reproducible(tmp_path):
    """tools/build_dup_model.py rebuilds the shipped bytes, from the shipped file itself and from
    the plain export (the file without what the script adds); both network models read that one
    file, through different outputs."""
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).resolve().parent.parent / "tools" / "build_dup_model.py"
    spec_ = importlib.util.spec_from_file_location("build_dup_model", tool)
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    v3, plain = get_model("dupscope-v3"), get_model("efficientnet-lite0")
    assert (v3.path, v3.sha256) == (plain.path, plain.sha256)
    assert (v3.output_name, plain.output_name) == ("dupscope_v3", "embedding")
    assert mod.build(tmp_path / "again.onnx") == v3.sha256
    export = onnx.load(v3.path)
    mod.strip(export)
    assert [o.name for o in export.graph.output] == ["embedding"]
    assert not any(n.name.startswith("dup/") or n.op_type == "GlobalMaxPool" for n in export.graph.node)
    onnx.save(export, tmp_path / "export.onnx")
    assert mod.build(tmp_path / "from_export.onnx", source=tmp_path / "export.onnx") == v3.sha256
    assert get_model("dupscope").name == "dupscope-v3"  # alias


def test_int8_models_share_the_float_models_settings():
    """The int8 file is the same network quantised (QDQ, int8 weights): its models read the same
    outputs, share the float models' fusion and tuned settings (``family``), and differ in file."""
    for name, base in (("dupscope-v3-int8", "dupscope-v3"), ("efficientnet-lite0-int8", "efficientnet-lite0")):
        q, f = get_model(name), get_model(base)
        assert q.family == base and f.family == base
        assert (q.output_name, q.dim, q.fusion, q.height, q.mean) == (f.output_name, f.dim, f.fusion, f.height, f.mean)
        assert q.path != f.path and q.sha256 != f.sha256
    m = onnx.load(get_model("dupscope-v3-int8").path)
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = [t for t in m.graph.initializer if t.data_type == TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in weights) > 3_000_000  # the convolutions' weights
    assert [o.name for o in m.graph.output] == [o.name for o in onnx.load(get_model("dupscope-v3").path).graph.output]


def test_int8_network_follows_the_float_network(tmp_path):
    """On real decoded pictures the int8 outputs point where the float outputs do, and each
    picture stays nearest to itself across the two networks. That is checked where the int8
    network is the default (CPUs with VNNI); elsewhere onnxruntime runs other int8 kernels,
    which were not measured, and only a sane output is required."""
    import dupscope

    vnni = bool(dupscope.build_info()["cpu_int8_dot"])
    spec, x, _ = _v3_inputs(tmp_path)
    for name in ("dupscope-v3", "efficientnet-lite0"):
        f, q = get_model(name), get_model(name + "-int8")
        a = create_session(f, device="cpu")[0].run([f.output_name], {f.input_name: x})[0].astype(np.float64)
        b = create_session(q, device="cpu")[0].run([q.output_name], {q.input_name: x})[0].astype(np.float64)
        assert b.shape == a.shape and np.isfinite(b).all() and (np.linalg.norm(b, axis=1) > 0).all()
        if not vnni:
            continue
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        cross = a @ b.T
        assert np.diag(cross).min() > 0.9, (name, np.diag(cross))
        assert (cross.argmax(axis=1) == np.arange(len(x))).all()
