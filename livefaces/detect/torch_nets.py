"""The three MTCNN networks in PyTorch (same layer names as facenet-pytorch's state dicts).

Only the exporter (``scripts/export_onnx.py``), the tests and the optional torch engine import
this module; running livefaces never needs torch.

The ``*Wrapped`` modules are what gets exported: they take **float32 NHWC RGB** images (values 0-255), do the
``(x - 127.5) / 128`` normalisation (folded into the first layer in :func:`export_form`) and the
NHWC→NCHW transpose inside the graph, and return only the face probability, so the numpy side
never touches pixel data after resizing.
"""

from __future__ import annotations

import torch
from torch import nn


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


class FaceLogit(nn.Module):
    """The 2-way face/not-face layer reduced to one output: ``z1 - z0`` (weights subtracted).

    ``softmax([z0, z1])[1] == sigmoid(z1 - z0)``, so the exported graphs compute one channel
    and a ``Sigmoid`` (fused into the convolution by ONNX Runtime) instead of two channels and
    a ``Softmax``. The wrappers below return ``[1 - p, p]`` so callers see the same shape.
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear) -> None:
        super().__init__()
        import copy

        self.layer = copy.deepcopy(layer)
        with torch.no_grad():
            w, b = layer.weight, layer.bias
            assert b is not None
            self.layer.weight = nn.Parameter((w[1] - w[0]).unsqueeze(0))
            self.layer.bias = nn.Parameter((b[1] - b[0]).unsqueeze(0))
        self.layer.out_features = 1 if isinstance(layer, nn.Linear) else None  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.layer(x))
        return torch.cat([1 - p, p], dim=1)


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class AddReluPReLU(nn.Module):
    """``PReLU`` with every slope ``a <= 1`` as ``x + relu((a - 1) * x)`` (equal up to float
    rounding).

    ONNX Runtime's ``PRelu`` with per-channel slopes is slow on the CPU and leaves its blocked
    NCHWc layout. Here the multiply becomes a 1x1 depthwise convolution with the ``Relu`` fused
    into it, plus one ``Add``: two passes over the map. The earlier ``a*x + (1-a)*relu(x)``
    took three (one core, Intel Xeon: one 1080p P-Net band 4.84 -> 4.57 ms).
    """

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        slope = prelu.weight.detach().clone()
        if bool((slope > 1).any()):
            raise ValueError("AddReluPReLU needs slopes <= 1")
        self.register_buffer("k", slope - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k: torch.Tensor = self.k  # type: ignore[assignment]  # a registered buffer
        return x + torch.relu(k.view((1, -1) + (1,) * (x.dim() - 2)) * x)


def _block(n: int, block: int = 16) -> int:
    return -(-n // block) * block


class FirstLayer(nn.Module):
    """The input normalisation, ``conv1`` and ``prelu1`` as two convolutions of the raw pixels:
    ``relu(conv_k(x)) + conv(x)``.

    ``conv`` is ``conv1`` with ``(x - 127.5) / 128`` folded into its weights and bias;
    ``conv_k`` is the same scaled by ``a - 1`` per channel, so the sum is ``PReLU(conv1(x))``
    for slopes ``a <= 1``. ONNX Runtime fuses the ``Relu`` into ``conv_k`` and the addition
    into ``conv`` (given the shared shape the exporter writes into the graph): one pass over
    the full-resolution map instead of five (normalise, PReLU's three, a layout change).
    Channels with a slope above 1 pass through as ``conv1(x)`` here and get their slope after
    the max-pool (:class:`PoolSlopes`: PReLU with a positive slope is monotonic, so it commutes
    with max-pooling). Output channels are padded to a multiple of 16 (zero filters), the
    block of ONNX Runtime's NCHWc layout, so the pool stays in it too.
    """

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU) -> None:
        super().__init__()
        n, m = conv.out_channels, _block(conv.out_channels)
        k = torch.clamp(prelu.weight.detach(), max=1.0) - 1
        self.conv = nn.Conv2d(conv.in_channels, m, conv.kernel_size)  # type: ignore[arg-type]
        self.conv_k = nn.Conv2d(conv.in_channels, m, conv.kernel_size)  # type: ignore[arg-type]
        assert conv.bias is not None and self.conv.bias is not None and self.conv_k.bias is not None
        with torch.no_grad():
            w = conv.weight.double() / 128  # (x - 127.5) / 128, folded
            b = conv.bias.double() - 127.5 * w.sum(dim=(1, 2, 3))
            for c, scale in ((self.conv, torch.ones_like(k)), (self.conv_k, k)):
                c.weight.zero_()
                c.bias.zero_()  # type: ignore[union-attr]
                c.weight[:n] = (w * scale.double().view(-1, 1, 1, 1)).float()
                c.bias[:n] = (b * scale.double()).float()  # type: ignore[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv_k(x)) + self.conv(x)


class PoolSlopes(nn.Module):
    """``pool1`` after :class:`FirstLayer`, then the slopes above 1 it left out, as
    ``x - relu((1 - a) * x)`` on the pooled map (a quarter of the pixels); nothing more when
    every slope is <= 1. Only P-Net (1 channel) and R-Net (2) have such slopes."""

    def __init__(self, pool: nn.Module, prelu: nn.PReLU) -> None:
        super().__init__()
        self.pool = pool
        slope = prelu.weight.detach()
        m = _block(len(slope))
        self.fix = bool((slope > 1).any())
        k = torch.zeros(m)
        k[:len(slope)] = torch.where(slope > 1, 1 - slope, torch.zeros_like(slope))
        self.register_buffer("k", k.view(1, -1, 1, 1))
        self.register_buffer("minus", -torch.ones(m).view(1, -1, 1, 1))  # a 1x1 conv for ORT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        if not self.fix:
            return x
        k: torch.Tensor = self.k  # type: ignore[assignment]
        minus: torch.Tensor = self.minus  # type: ignore[assignment]
        return x + minus * torch.relu(k * x)


def _pad_inputs(conv: nn.Conv2d, m: int) -> nn.Conv2d:
    out = nn.Conv2d(m, conv.out_channels, conv.kernel_size)  # type: ignore[arg-type]
    assert out.bias is not None and conv.bias is not None
    with torch.no_grad():
        out.weight.zero_()
        out.weight[:, :conv.in_channels] = conv.weight
        out.bias.copy_(conv.bias)
    return out


def export_form(net: nn.Module) -> nn.Module:
    """A copy of ``net`` rewritten for fast ONNX Runtime execution (same outputs to ~1e-6) that
    takes raw pixels (0-255, NCHW; the normalisation is folded into the first layer):
    ``conv1``/``prelu1``/``pool1`` become :class:`FirstLayer` and :class:`PoolSlopes`, the other
    ``PReLU``s :class:`AddReluPReLU`, the face/not-face softmax :class:`FaceLogit`.

    One core, Intel Xeon (Sapphire Rapids), against the previous form (``a*x + (1-a)*relu(x)``,
    normalisation in the graph): a 1080p P-Net band 4.84 -> 4.19 ms, 16 R-Net crops 0.59 ->
    0.50 ms, 8 O-Net crops 1.90 -> 1.59 ms.
    """
    import copy

    src = copy.deepcopy(net)
    out = copy.deepcopy(net)
    conv1, prelu1, pool1, conv2 = src.conv1, src.prelu1, src.pool1, src.conv2  # type: ignore[union-attr]
    assert isinstance(conv1, nn.Conv2d) and isinstance(prelu1, nn.PReLU) and isinstance(conv2, nn.Conv2d)
    assert isinstance(pool1, nn.Module)
    out.conv1 = FirstLayer(conv1, prelu1)
    out.prelu1 = _Identity()
    out.pool1 = PoolSlopes(pool1, prelu1)
    out.conv2 = _pad_inputs(conv2, _block(conv1.out_channels))
    for name, child in list(out.named_children()):
        if isinstance(child, nn.PReLU):
            setattr(out, name, AddReluPReLU(child))
    for layer, softmax in (("conv4_1", "softmax4_1"), ("dense5_1", "softmax5_1"), ("dense6_1", "softmax6_1")):
        if hasattr(out, layer):
            setattr(out, layer, FaceLogit(getattr(out, layer)))
            setattr(out, softmax, _Identity())
    out.takes_pixels = True  # type: ignore[assignment]  # the wrappers skip _normalise
    return out.eval()


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """NHWC pixels 0-255 (float32) → NCHW in MTCNN's input range."""
    return ((x - 127.5) * 0.0078125).permute(0, 3, 1, 2)


def _prepare(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """NHWC pixels → what ``net`` takes: raw NCHW for an :func:`export_form`, else normalised."""
    if getattr(net, "takes_pixels", False):
        return x.permute(0, 3, 1, 2)
    return _normalise(x)


class PNetWrapped(nn.Module):
    """``image`` float32 (N, H, W, 3) → ``prob`` (N, H', W'), ``reg`` (N, 4, H', W')."""

    def __init__(self, net: PNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, prob = self.net(_prepare(self.net, image))
        return prob[:, 1], reg


class RNetWrapped(nn.Module):
    """``image`` float32 (N, 24, 24, 3) → ``prob`` (N,), ``reg`` (N, 4)."""

    def __init__(self, net: RNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, prob = self.net(_prepare(self.net, image))
        return prob[:, 1], reg


class ONetWrapped(nn.Module):
    """``image`` float32 (N, 48, 48, 3) → ``prob`` (N,), ``reg`` (N, 4), ``points`` (N, 10).

    ``points`` holds 5 x fractions then 5 y fractions of the (square) input box.
    """

    def __init__(self, net: ONet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reg, points, prob = self.net(_prepare(self.net, image))
        return prob[:, 1], reg, points


def load_nets_npz(path: str) -> tuple[PNet, RNet, ONet]:
    """Load the three nets from ``models/mtcnn_weights.npz`` (written by the exporter)."""
    import numpy as np

    nets = (PNet(), RNet(), ONet())
    with np.load(path) as data:
        for name, net in zip(("pnet", "rnet", "onet"), nets):
            state = {k.split(".", 1)[1]: torch.from_numpy(data[k]) for k in data.files
                     if k.startswith(name + ".")}
            net.load_state_dict(state)
            net.eval()
    return nets


def load_nets(weights_dir: str) -> tuple[PNet, RNet, ONet]:
    """Load facenet-pytorch's ``{pnet,rnet,onet}.pt`` state dicts from ``weights_dir``."""
    import os

    nets = (PNet(), RNet(), ONet())
    for name, net in zip(("pnet", "rnet", "onet"), nets):
        state = torch.load(os.path.join(weights_dir, f"{name}.pt"), map_location="cpu")
        net.load_state_dict(state)
        net.eval()
    return nets
