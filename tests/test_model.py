"""The U²-Net architecture and its weight loaders, against the real rembg exports."""

from __future__ import annotations

import types

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from torch import nn

from u2net.errors import WeightsError
from u2net.model import REBNCONV, build_model, conv_call_order, load_model

ARCHS = ("u2netp", "u2net")


@pytest.fixture(scope="module")
def loaded(weights_dir):
    """Each architecture loaded once from its real .onnx (the full model takes a few seconds)."""
    cache: dict[str, nn.Module] = {}

    def get(arch: str) -> nn.Module:
        if arch not in cache:
            cache[arch] = load_model(arch, weights_dir / f"{arch}.onnx")
        return cache[arch]

    return get


def _network_input(path) -> torch.Tensor:
    """A real photo as the network sees it (resize to 320, divide by max, ImageNet mean/std)."""
    rgb = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(rgb, size=(320, 320), mode="bilinear", align_corners=False)
    x = x / x.max()
    mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
    return ((x - mean) / std).contiguous()


@pytest.mark.parametrize("arch", ARCHS)
def test_torch_matches_onnxruntime_on_the_same_export(arch, loaded, weights_dir, reference_dir):
    """The fused map (and every side map) equals onnxruntime's answer on the same input."""
    import onnxruntime as ort

    model = loaded(arch)
    x = _network_input(reference_dir / "images" / "bike.jpg")
    with torch.inference_mode():
        fused = model(x).numpy()
        all_maps = [t.numpy() for t in model.forward_all(x)]
    sess = ort.InferenceSession(str(weights_dir / f"{arch}.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert fused.shape == (1, 1, 320, 320)
    diffs = [float(np.abs(a - b).max()) for a, b in zip(all_maps, ref, strict=True)]
    print(f"\n{arch}: max |torch - onnxruntime| per output d0..d6: {diffs}")
    assert float(np.abs(fused - ref[0]).max()) <= 1e-4
    assert max(diffs) <= 1e-4, diffs
    # A real prediction, not a constant: the fused map spans most of 0..1.
    assert ref[0].max() - ref[0].min() > 0.5


def test_forward_returns_only_the_fused_map_and_handles_odd_sizes(loaded):
    model = loaded("u2netp")
    x = torch.rand(2, 3, 75, 61)  # odd sizes exercise ceil_mode pooling and upsampling back
    with torch.inference_mode():
        d0 = model(x)
        maps = model.forward_all(x)
    assert d0.shape == (2, 1, 75, 61)
    assert len(maps) == 7 and all(m.shape == (2, 1, 75, 61) for m in maps)
    torch.testing.assert_close(d0, maps[0])
    assert float(d0.min()) >= 0.0 and float(d0.max()) <= 1.0


@pytest.mark.parametrize("arch,convs,params", [("u2netp", 119, 1_125_485), ("u2net", 119, 43_981_069)])
def test_architecture_size(arch, convs, params):
    model = build_model(arch)
    assert len(conv_call_order(model)) == convs
    # The conv weights + biases held by the published rembg exports (counted from the .onnx files).
    assert sum(p.numel() for p in model.parameters()) == params


def _edited_copy(src, dst, edit) -> None:
    model = onnx.load(str(src))
    edit(model.graph)
    onnx.save(model, str(dst))


def _replace_initializer(graph, name: str, make) -> None:
    """Replace the stored tensor `name` by make(its array) (an onnx TensorProto)."""
    for i, t in enumerate(graph.initializer):
        if t.name == name:
            graph.initializer[i].CopyFrom(make(numpy_helper.to_array(t)))


def test_refuses_an_export_with_a_wrong_shape(weights_dir, tmp_path):
    def shrink_one_conv(graph):
        convs = [n for n in graph.node if n.op_type == "Conv"]
        name = convs[5].input[1]
        # One input channel fewer.
        _replace_initializer(graph, name, lambda arr: numpy_helper.from_array(arr[:, :-1], name))

    bad = tmp_path / "u2netp.onnx"
    _edited_copy(weights_dir / "u2netp.onnx", bad, shrink_one_conv)
    with pytest.raises(WeightsError, match=r"has shape \(16, 15, 3, 3\), the model needs \(16, 16, 3, 3\)"):
        load_model("u2netp", bad)


def test_refuses_an_export_with_too_few_convolutions(weights_dir, tmp_path):
    def drop_last_conv(graph):
        last = [n for n in graph.node if n.op_type == "Conv"][-1]
        graph.node.remove(last)

    bad = tmp_path / "u2netp.onnx"
    _edited_copy(weights_dir / "u2netp.onnx", bad, drop_last_conv)
    with pytest.raises(WeightsError, match="118 convolutions, the model has 119"):
        load_model("u2netp", bad)


@pytest.mark.parametrize("arch", ["u2netp", "u2net"])
def test_onnx_reader_reads_what_the_onnx_package_reads(arch, weights_dir):
    # The loader decodes ONNX itself (importing `onnx` cost every process half a second); the
    # onnx package is the reference for every node, attribute and tensor of the real exports.
    from u2net.onnxfile import read_graph

    path = weights_dir / f"{arch}.onnx"
    ours = read_graph(path)
    theirs = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in theirs.initializer}
    assert ours.tensors.keys() == tensors.keys()
    for name, want in tensors.items():
        got = ours.tensors[name]
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    assert len(ours.nodes) == len(theirs.node)
    for got, want in zip(ours.nodes, theirs.node, strict=True):
        assert (got.op_type, got.name, got.inputs, got.outputs) == (
            want.op_type, want.name, list(want.input), list(want.output))
        for attr in want.attribute:
            value = onnx.helper.get_attribute_value(attr)
            if isinstance(value, onnx.TensorProto):
                assert np.array_equal(got.attributes[attr.name], numpy_helper.to_array(value))
            else:
                assert got.attributes[attr.name] == (list(value) if isinstance(value, list) else value)


def test_onnx_reader_reads_float_data_and_constant_nodes(weights_dir, tmp_path):
    # Exporters may store a tensor as float_data instead of raw bytes, or as a Constant node.
    def restore_differently(graph):
        convs = [n for n in graph.node if n.op_type == "Conv"]
        weight = convs[0].input[1]
        _replace_initializer(graph, weight, lambda arr: onnx.helper.make_tensor(
            weight, onnx.TensorProto.FLOAT, arr.shape, arr.ravel().tolist()))
        bias = convs[1].input[2]
        for t in list(graph.initializer):
            if t.name == bias:
                graph.initializer.remove(t)
                graph.node.insert(0, onnx.helper.make_node("Constant", [], [bias], value=t))

    edited = tmp_path / "u2netp.onnx"
    _edited_copy(weights_dir / "u2netp.onnx", edited, restore_differently)
    want, got = load_model("u2netp", weights_dir / "u2netp.onnx"), load_model("u2netp", edited)
    for (name, a), (_, b) in zip(want.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_refuses_truncated_and_corrupt_onnx_files(weights_dir, tmp_path):
    data = (weights_dir / "u2netp.onnx").read_bytes()
    cut = tmp_path / "u2netp.onnx"
    for broken in (data[: len(data) // 2], data[:-7], data[:1] + b"\xff" * 40 + data[41:], b"\x08"):
        cut.write_bytes(broken)
        with pytest.raises(WeightsError, match="not a readable ONNX file|does not fit|not a stored tensor|no bias"):
            load_model("u2netp", cut)
    # Bytes flipped anywhere in the graph's first part: refused (or read), never another error.
    rng = np.random.default_rng(5)
    for _ in range(8):
        flipped = bytearray(data)
        for pos in rng.integers(0, 200_000, 3):
            flipped[pos] ^= int(rng.integers(1, 256))
        cut.write_bytes(bytes(flipped))
        try:
            load_model("u2netp", cut)
        except WeightsError:
            pass


def test_refuses_small_weights_in_the_full_architecture(weights_dir):
    with pytest.raises(WeightsError, match="does not fit the u2net architecture"):
        load_model("u2net", weights_dir / "u2netp.onnx")


def test_refuses_files_that_are_not_weights(tmp_path):
    junk = tmp_path / "u2netp.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(WeightsError, match="not a readable ONNX file"):
        load_model("u2netp", junk)
    other = tmp_path / "u2netp.bin"
    other.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown weights format"):
        load_model("u2netp", other)
    pickled = tmp_path / "u2netp.pth"
    torch.save({"payload": types.SimpleNamespace(a=1)}, pickled)  # arbitrary object: must not load
    with pytest.raises(WeightsError, match="not a loadable PyTorch weights file"):
        load_model("u2netp", pickled)


def _official_unfolded(arch: str, seed: int) -> nn.Module:
    """The official training layout: every REBNCONV as conv_s1 + bn_s1 (random stats) + ReLU.

    Its state dict has exactly the official checkpoint's keys (…conv_s1.weight/bias,
    …bn_s1.weight/bias/running_mean/running_var/num_batches_tracked, side*, outconv).
    """
    torch.manual_seed(seed)
    model = build_model(arch)
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, REBNCONV):
            n = mod.conv_s1.out_channels
            bn = nn.BatchNorm2d(n)
            bn.weight.data = torch.rand(n, generator=gen) + 0.5
            bn.bias.data = torch.randn(n, generator=gen) * 0.1
            bn.running_mean = torch.randn(n, generator=gen) * 0.1
            bn.running_var = torch.rand(n, generator=gen) + 0.5
            mod.bn_s1 = bn

            def forward(self, x):
                return self.relu_s1(self.bn_s1(self.conv_s1(x)))

            mod.forward = types.MethodType(forward, mod)
    return model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_official_pth_round_trip_folds_batchnorm(arch, tmp_path):
    official = _official_unfolded(arch, seed=1)
    keys = official.state_dict().keys()
    assert "stage1.rebnconvin.bn_s1.running_var" in keys and "outconv.weight" in keys
    path = tmp_path / f"{arch}.pth"
    torch.save(official.state_dict(), path)

    folded = load_model(arch, path)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        want = official.forward_all(x)
        got = folded.forward_all(x)
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)

    # A DataParallel checkpoint ("module." prefixes) loads the same.
    dp = tmp_path / f"{arch}_dp.pth"
    torch.save({f"module.{k}": v for k, v in official.state_dict().items()}, dp)
    with torch.inference_mode():
        torch.testing.assert_close(load_model(arch, dp)(x), want[0], atol=1e-5, rtol=1e-4)


def test_pth_of_the_other_architecture_is_refused(tmp_path):
    path = tmp_path / "u2netp.pth"
    torch.save(_official_unfolded("u2netp", seed=2).state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit the u2net architecture"):
        load_model("u2net", path)
