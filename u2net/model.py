"""The U²-Net and U²-Netp architectures (Qin et al., Pattern Recognition 2020), inference form.

The layer layout, channel widths, pooling and upsampling follow the official repository
(xuebinqin/U-2-Net, model/u2net.py) exactly, so the published weights give the published
answer. Inference form: every REBNCONV is one Conv2d with a bias (its BatchNorm folded in at
load time) followed by ReLU; attribute names match the official ones (`conv_s1`, `side1`, …)
so a folded official state dict maps onto this model by name.

Loading: `load_model(architecture, path)` reads rembg's `.onnx` exports (with the `onnx`
package, never executing the graph) and the official `.pth` state dicts (`weights_only=True`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import WeightsError

ARCHITECTURES = ("u2net", "u2netp")
BN_EPS = 1e-5  # PyTorch's BatchNorm2d default, used by the official checkpoints


class REBNCONV(nn.Module):
    """3×3 (dilated) convolution + ReLU; the official conv + BatchNorm + ReLU with BN folded."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, dirate: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate, bias=True)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.conv_s1(x))


def _upsample_like(src: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of `src` to the spatial size of `tar` (the official helper)."""
    return F.interpolate(src, size=tar.shape[2:], mode="bilinear", align_corners=False)


def _residual(hx1d: torch.Tensor, hxin: torch.Tensor) -> torch.Tensor:
    """hx1d + hxin, the block's residual, written into hx1d (nothing else reads it) whenever
    the sum keeps hx1d's dtype: one full-resolution map less to allocate per block."""
    if hx1d.dtype == torch.promote_types(hx1d.dtype, hxin.dtype):
        return hx1d.add_(hxin)
    return hx1d + hxin


def _pool() -> nn.MaxPool2d:
    # ceil_mode keeps odd sizes (e.g. 320 -> 160 -> 80 -> 40 -> 20 -> 10) from losing a row.
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


class _RSU(nn.Module):
    """Residual U-block of height L (RSU-7, -6, -5, -4): an encoder of L-1 convolutions with
    L-2 poolings, a dilated bottom, a decoder back up, plus the input residual.

    The official code spells out each height as its own class (RSU7 … RSU4); they differ only
    in depth, so one loop builds them with the same attribute names and the same call order.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        for i in range(1, height - 1):
            setattr(self, f"pool{i}", _pool())
            setattr(self, f"rebnconv{i + 1}", REBNCONV(mid_ch, mid_ch, dirate=1))
        setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dirate=2))
        for i in range(height - 1, 1, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(mid_ch * 2, mid_ch, dirate=1))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_hxin(self.rebnconvin(x))

    def from_hxin(self, hxin: torch.Tensor) -> torch.Tensor:
        """The block after its first convolution (u2net.accel computes that one its own way)."""
        h = self.height
        enc = [self.rebnconv1(hxin)]  # hx1 … hx(L-1)
        for i in range(1, h - 1):
            pooled = getattr(self, f"pool{i}")(enc[-1])
            enc.append(getattr(self, f"rebnconv{i + 1}")(pooled))
        hx = getattr(self, f"rebnconv{h}")(enc[-1])  # dilated bottom, same resolution
        for i in range(h - 1, 1, -1):
            hxd = getattr(self, f"rebnconv{i}d")(torch.cat((hx, enc[i - 1]), 1))
            hx = _upsample_like(hxd, enc[i - 2])
        hx1d = self.rebnconv1d(torch.cat((hx, enc[0]), 1))
        return _residual(hx1d, hxin)


class RSU7(_RSU):
    def __init__(self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3) -> None:
        super().__init__(7, in_ch, mid_ch, out_ch)


class RSU6(_RSU):
    def __init__(self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3) -> None:
        super().__init__(6, in_ch, mid_ch, out_ch)


class RSU5(_RSU):
    def __init__(self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3) -> None:
        super().__init__(5, in_ch, mid_ch, out_ch)


class RSU4(_RSU):
    def __init__(self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3) -> None:
        super().__init__(4, in_ch, mid_ch, out_ch)


class RSU4F(nn.Module):
    """RSU-4F: no pooling, dilations 1, 2, 4, 8 instead (the deepest, smallest stages)."""

    def __init__(self, in_ch: int = 3, mid_ch: int = 12, out_ch: int = 3) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_hxin(self.rebnconvin(x))

    def from_hxin(self, hxin: torch.Tensor) -> torch.Tensor:
        """The block after its first convolution (u2net.accel computes that one its own way)."""
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return _residual(hx1d, hxin)


# (block, in, mid, out) per stage; side-output input widths follow from the decoder outputs.
_LAYOUT = {
    "u2net": {
        "encoder": [(RSU7, 3, 32, 64), (RSU6, 64, 32, 128), (RSU5, 128, 64, 256),
                    (RSU4, 256, 128, 512), (RSU4F, 512, 256, 512), (RSU4F, 512, 256, 512)],
        "decoder": [(RSU4F, 1024, 256, 512), (RSU4, 1024, 128, 256), (RSU5, 512, 64, 128),
                    (RSU6, 256, 32, 64), (RSU7, 128, 16, 64)],
        "sides": [64, 64, 128, 256, 512, 512],
    },
    "u2netp": {
        "encoder": [(RSU7, 3, 16, 64), (RSU6, 64, 16, 64), (RSU5, 64, 16, 64),
                    (RSU4, 64, 16, 64), (RSU4F, 64, 16, 64), (RSU4F, 64, 16, 64)],
        "decoder": [(RSU4F, 128, 16, 64), (RSU4, 128, 16, 64), (RSU5, 128, 16, 64),
                    (RSU6, 128, 16, 64), (RSU7, 128, 16, 64)],
        "sides": [64, 64, 64, 64, 64, 64],
    },
}


class U2Net(nn.Module):
    """U²-Net (architecture "u2net") or U²-Netp ("u2netp"), one input, seven sigmoid maps.

    `model(x)` returns only the fused map d0, shape (N, 1, H, W), in 0..1: that is all the
    product uses, and skipping the six extra sigmoids saves a little. `forward_all(x)` returns
    (d0, d1, …, d6) like the official forward.
    """

    def __init__(self, architecture: str = "u2net", in_ch: int = 3, out_ch: int = 1) -> None:
        super().__init__()
        if architecture not in _LAYOUT:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.architecture = architecture
        layout = _LAYOUT[architecture]
        enc = list(layout["encoder"])
        enc[0] = (enc[0][0], in_ch, *enc[0][2:])
        for i, (block, cin, mid, cout) in enumerate(enc, start=1):
            setattr(self, f"stage{i}", block(cin, mid, cout))
            if i < 6:
                setattr(self, f"pool{i}{i + 1}", _pool())
        for i, (block, cin, mid, cout) in zip(range(5, 0, -1), layout["decoder"], strict=True):
            setattr(self, f"stage{i}d", block(cin, mid, cout))
        for i, cin in enumerate(layout["sides"], start=1):
            setattr(self, f"side{i}", nn.Conv2d(cin, out_ch, 3, padding=1))
        self.outconv = nn.Conv2d(6 * out_ch, out_ch, 1)

    def _logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The seven maps before sigmoid, in the official call order (sides 1→6, then fuse)."""
        enc = []
        hx = x
        for i in range(1, 7):
            hx = getattr(self, f"stage{i}")(hx)
            enc.append(hx)
            if i < 6:
                hx = getattr(self, f"pool{i}{i + 1}")(hx)
        dec = {6: enc[5]}  # hx6 is both the bottom of the encoder and the first "decoder" map
        hx = enc[5]
        for i in range(5, 0, -1):
            hx = self.decode(i, _upsample_like(hx, enc[i - 1]), enc[i - 1])
            dec[i] = hx
        d1 = self.side1(dec[1])
        sides = [d1] + [_upsample_like(getattr(self, f"side{i}")(dec[i]), d1) for i in range(2, 7)]
        d0 = self.outconv(torch.cat(sides, 1))
        return [d0, *sides]

    def decode(self, i: int, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decoder stage i on the upsampled deeper map and the encoder's skip connection."""
        return getattr(self, f"stage{i}d")(torch.cat((up, skip), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused saliency map d0 after sigmoid, shape (N, 1, H, W)."""
        return torch.sigmoid(self._logits(x)[0])

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """All seven maps (d0 fused, d1 … d6 side outputs) after sigmoid, each (N, 1, H, W)."""
        return tuple(torch.sigmoid(d) for d in self._logits(x))


def build_model(architecture: str) -> U2Net:
    """A U²-Net of the given architecture ("u2net" or "u2netp") with random weights, eval mode."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return U2Net(architecture).eval()


def conv_call_order(model: nn.Module, size: int = 64) -> list[tuple[str, nn.Conv2d]]:
    """(name, Conv2d) for every convolution, in the order the forward pass calls them.

    Recorded with forward hooks on a small dummy input, so it is the real call order whatever
    the module registration order is — the order in which an ONNX export lists its Conv nodes.
    """
    names = {mod: name for name, mod in model.named_modules() if isinstance(mod, nn.Conv2d)}
    order: list[tuple[str, nn.Conv2d]] = []
    hooks = [m.register_forward_hook(lambda mod, _inp, _out: order.append((names[mod], mod)))
             for m in names]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return order


def load_model(architecture: str, path: Path | str) -> U2Net:
    """Build the architecture and fill it with the weights in `path` (.onnx or .pth).

    Parameters:
        architecture: "u2net" or "u2netp".
        path: a rembg ONNX export (`.onnx`) or an official PyTorch state dict (`.pth`/`.pt`).
            The file is trusted to be the one named; weights.py verifies checksums first.

    Returns:
        The model in eval mode on the CPU, float32.

    Raises:
        WeightsError: unreadable file, unknown format, or weights that do not fit the
            architecture (the message says which layer and which shapes).
    """
    path = Path(path)
    model = build_model(architecture)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        _load_onnx(model, path)
    elif suffix in (".pth", ".pt"):
        _load_pth(model, path)
    else:
        raise WeightsError(f"{path.name}: unknown weights format {suffix!r}; expected .onnx or .pth")
    return model.eval()


def _check_shape(what: str, name: str, got: tuple, want: tuple, path: Path, arch: str) -> None:
    if tuple(got) != tuple(want):
        raise WeightsError(
            f"{path.name} does not fit the {arch} architecture: {what} for {name} has shape "
            f"{tuple(got)}, the model needs {tuple(want)} (is this the weights file of another model?)"
        )


def _load_onnx(model: U2Net, path: Path) -> None:
    from .onnxfile import OnnxFormatError, read_graph  # no `onnx` import: half a second saved

    try:
        graph = read_graph(path)
    except (OnnxFormatError, OSError) as exc:
        raise WeightsError(f"{path.name}: not a readable ONNX file ({exc})") from None
    consts = {n.outputs[0]: n for n in graph.nodes if n.op_type == "Constant" and n.outputs}

    def tensor(name: str) -> np.ndarray:
        if name in graph.tensors:
            return graph.tensors[name]
        value = consts[name].attributes.get("value") if name in consts else None
        if isinstance(value, np.ndarray):  # some exporters put weights in Constant nodes
            return value
        raise WeightsError(f"{path.name}: Conv input {name!r} is not a stored tensor; "
                           "not an inference-form U²-Net export")

    conv_nodes = [n for n in graph.nodes if n.op_type == "Conv"]
    order = conv_call_order(model)
    arch = model.architecture
    if len(conv_nodes) != len(order):
        raise WeightsError(
            f"{path.name} does not fit the {arch} architecture: it holds {len(conv_nodes)} "
            f"convolutions, the model has {len(order)} (is this the weights file of another model?)"
        )
    state: dict[str, torch.Tensor] = {}
    for node, (name, conv) in zip(conv_nodes, order, strict=True):
        attrs = node.attributes
        if len(node.inputs) < 3:
            raise WeightsError(f"{path.name}: Conv {node.name} has no bias; not an inference-form export")
        weight, bias = tensor(node.inputs[1]), tensor(node.inputs[2])
        _check_shape("the weight", name, weight.shape, conv.weight.shape, path, arch)
        _check_shape("the bias", name, bias.shape, conv.bias.shape, path, arch)
        # Kernel geometry must match too: a same-shaped conv with other dilation is another net.
        for key, want in (("dilations", conv.dilation), ("strides", conv.stride),
                          ("pads", tuple(conv.padding) * 2), ("group", conv.groups)):
            if key in attrs:
                got = attrs[key] if key != "group" else int(attrs[key])
                if (tuple(got) if isinstance(got, (list, tuple)) else got) != want:
                    raise WeightsError(f"{path.name}: Conv {node.name} ({name}) has {key}={got}, "
                                       f"the {arch} architecture needs {want}")
        # Side outputs keep their PyTorch names in rembg's exports: a free cross-check of order.
        stored = node.inputs[1]
        if not stored[:1].isdigit() and stored.endswith(".weight") and stored != f"{name}.weight":
            raise WeightsError(f"{path.name}: Conv {node.name} holds {stored!r} where the model "
                               f"calls {name}; the layer order does not match {arch}")
        state[f"{name}.weight"] = torch.from_numpy(weight.astype(np.float32, copy=True))
        state[f"{name}.bias"] = torch.from_numpy(bias.astype(np.float32, copy=True))
    model.load_state_dict(state, strict=True)


def _load_pth(model: U2Net, path: Path) -> None:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path.name}: not a loadable PyTorch weights file ({exc}); only plain "
                           "state dicts are read, never pickled code") from None
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise WeightsError(f"{path.name}: expected a state dict, found {type(raw).__name__}")
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    raw = {(k[7:] if k.startswith("module.") else k): v for k, v in raw.items()}
    arch = model.architecture
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        w_key, b_key = f"{name}.weight", f"{name}.bias"
        if w_key not in raw or b_key not in raw:
            raise WeightsError(f"{path.name} does not fit the {arch} architecture: it has no {w_key}")
        w, b = raw[w_key].float(), raw[b_key].float()
        _check_shape("the weight", name, w.shape, conv.weight.shape, path, arch)
        _check_shape("the bias", name, b.shape, conv.bias.shape, path, arch)
        used.update((w_key, b_key))
        if name.endswith(".conv_s1"):
            bn = name[: -len("conv_s1")] + "bn_s1"
            keys = {k: f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var")}
            missing = [v for v in keys.values() if v not in raw]
            if missing:
                raise WeightsError(f"{path.name} does not fit the {arch} architecture: "
                                   f"missing {', '.join(missing)}")
            for k, key in keys.items():
                _check_shape(f"BatchNorm {k}", bn, raw[key].shape, conv.bias.shape, path, arch)
            gamma, beta, mean, var = (raw[keys[k]].float() for k in
                                      ("weight", "bias", "running_mean", "running_var"))
            used.update(keys.values())
            used.add(f"{bn}.num_batches_tracked")
            # y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta, folded into conv's w and b.
            scale = gamma / torch.sqrt(var + BN_EPS)
            w = w * scale[:, None, None, None]
            b = (b - mean) * scale + beta
        state[w_key], state[b_key] = w.contiguous(), b.contiguous()
    extra = sorted(k for k in raw if k not in used)
    if extra:
        raise WeightsError(f"{path.name} does not fit the {arch} architecture: unexpected "
                           f"{len(extra)} tensors such as {extra[0]!r}")
    model.load_state_dict(state, strict=True)
