"""The three MTCNN networks in PyTorch (same layer names as facenet-pytorch's state dicts).

Only the exporter (``scripts/export_onnx.py``), the tests and the optional torch engine import
this module; running livefaces never needs torch.

The ``*Wrapped`` modules run the original nets on **float32 NHWC RGB** images (values 0-255):
the ``(x - 127.5) / 128`` normalisation and the NHWC→NCHW transpose happen inside, and only the
face probability is returned, so the numpy side never touches pixel data after resizing (the
torch engine uses them). :func:`export_net` gives what is exported to ONNX: the same inputs and
outputs, rewritten for ONNX Runtime (normalisation folded into the first layer, PReLU as
fusable convolutions, output layers merged).
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


def _head(*layers: nn.Conv2d | nn.Linear) -> nn.Module:
    """The output layers side by side as one layer of the same kind, the face/not-face pair
    reduced to one logit ``z1 - z0`` (``softmax([z0, z1])[1] == sigmoid(z1 - z0)``)."""
    ws = [m.weight.detach() for m in layers]
    bs = [m.bias.detach() for m in layers if m.bias is not None]
    assert len(bs) == len(ws)
    ws[0] = (ws[0][1] - ws[0][0]).unsqueeze(0)
    bs[0] = (bs[0][1] - bs[0][0]).unsqueeze(0)
    w, b = torch.cat(ws), torch.cat(bs)
    head: nn.Conv2d | nn.Linear = (nn.Conv2d(w.shape[1], w.shape[0], kernel_size=1)
                                   if isinstance(layers[0], nn.Conv2d) else nn.Linear(w.shape[1], w.shape[0]))
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)  # type: ignore[union-attr]
    return head


def _dense_nchw(dense: nn.Linear, channels: int, size: int) -> nn.Linear:
    """``dense`` with its inputs reordered from the (W, H, C) flattening the original nets use
    (``permute(0, 3, 2, 1)``) to plain NCHW flattening: no transpose in the graph."""
    out = nn.Linear(dense.in_features, dense.out_features)
    idx = torch.arange(dense.in_features).view(size, size, channels)  # [w, h, c] -> old index
    with torch.no_grad():
        out.weight.copy_(dense.weight[:, idx.permute(2, 1, 0).reshape(-1)])
        out.bias.copy_(dense.bias)
    return out


class _Cascade(nn.Module):
    """Shared start of the export nets: NHWC pixels (0-255) → the first block's pooled map.

    ``precise`` (off for the export; the torch engine turns it on): the face probability's
    sigmoid in float64, rounded once to float32. Near saturation float32 ``sigmoid`` rounds
    e.g. 0.99999994 up to 1.0, which makes ties that ONNX Runtime's (closer) sigmoid does not,
    and ties decide which box an NMS keeps."""

    precise = False

    def _prob(self, logit: torch.Tensor) -> torch.Tensor:
        if self.precise:
            return torch.sigmoid(logit.double()).float()
        return torch.sigmoid(logit)

    def _start(self, net: PNet | RNet | ONet) -> None:
        m = _block(net.conv1.out_channels)
        self.first = FirstLayer(net.conv1, net.prelu1)
        self.pool1 = PoolSlopes(net.pool1, net.prelu1)
        self.conv2 = _pad_inputs(net.conv2, m)
        self.prelu2 = AddReluPReLU(net.prelu2)

    def _block1(self, image: torch.Tensor) -> torch.Tensor:
        return self.prelu2(self.conv2(self.pool1(self.first(image.permute(0, 3, 1, 2)))))


class PNetExport(_Cascade):
    """P-Net as exported: ``image`` float32 (N, H, W, 3) 0-255 → ``prob`` (N, H', W'), ``reg``
    (N, 4, H', W'). The two 1x1 output convolutions are one (5 channels): a 1080p band
    4.53 -> 4.32 ms on one core."""

    def __init__(self, net: PNet) -> None:
        super().__init__()
        self._start(net)
        self.conv3, self.prelu3 = net.conv3, AddReluPReLU(net.prelu3)
        self.head = _head(net.conv4_1, net.conv4_2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu3(self.conv3(self._block1(image)))
        h = self.head(x)
        return self._prob(h[:, 0]), h[:, 1:]


class RNetExport(_Cascade):
    """R-Net as exported: ``image`` float32 (N, 24, 24, 3) → ``prob`` (N,), ``reg`` (N, 4)."""

    def __init__(self, net: RNet) -> None:
        super().__init__()
        self._start(net)
        self.pool2, self.conv3, self.prelu3 = net.pool2, net.conv3, AddReluPReLU(net.prelu3)
        self.dense4, self.prelu4 = _dense_nchw(net.dense4, 64, 3), AddReluPReLU(net.prelu4)
        self.head = _head(net.dense5_1, net.dense5_2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu3(self.conv3(self.pool2(self._block1(image))))
        h = self.head(self.prelu4(self.dense4(x.flatten(1))))
        return self._prob(h[:, 0]), h[:, 1:]


class ONetExport(_Cascade):
    """O-Net as exported: ``image`` float32 (N, 48, 48, 3) → ``prob`` (N,), ``reg`` (N, 4),
    ``points`` (N, 10) (5 x fractions then 5 y fractions of the square input box)."""

    def __init__(self, net: ONet) -> None:
        super().__init__()
        self._start(net)
        self.pool2, self.conv3, self.prelu3 = net.pool2, net.conv3, AddReluPReLU(net.prelu3)
        self.pool3, self.conv4, self.prelu4 = net.pool3, net.conv4, AddReluPReLU(net.prelu4)
        self.dense5, self.prelu5 = _dense_nchw(net.dense5, 128, 3), AddReluPReLU(net.prelu5)
        self.head = _head(net.dense6_1, net.dense6_2, net.dense6_3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.prelu3(self.conv3(self.pool2(self._block1(image))))
        x = self.prelu4(self.conv4(self.pool3(x)))
        h = self.head(self.prelu5(self.dense5(x.flatten(1))))
        return self._prob(h[:, 0]), h[:, 1:5], h[:, 5:]


def export_net(net: nn.Module) -> nn.Module:
    """The module exported to ONNX for ``net`` (a copy; ``net`` is left alone): same outputs as
    ``PNetWrapped(net)`` etc. to ~1e-6, rewritten for ONNX Runtime on the CPU. One core, Intel
    Xeon (Sapphire Rapids), against the earlier form (``a*x + (1-a)*relu(x)``, normalisation
    and transposes in the graph, one output layer per head): a 1080p P-Net band 4.84 -> 4.19 ms
    (then 4.53 -> 4.32 with the merged heads), 16 R-Net crops 0.59 -> 0.50 ms, 8 O-Net crops
    1.90 -> 1.59 ms."""
    import copy

    net = copy.deepcopy(net).eval()
    if isinstance(net, PNet):
        return PNetExport(net).eval()
    if isinstance(net, RNet):
        return RNetExport(net).eval()
    if isinstance(net, ONet):
        return ONetExport(net).eval()
    raise TypeError(f"not an MTCNN net: {type(net).__name__}")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """NHWC pixels 0-255 (float32) → NCHW in MTCNN's input range."""
    return ((x - 127.5) * 0.0078125).permute(0, 3, 1, 2)


class PNetWrapped(nn.Module):
    """``image`` float32 (N, H, W, 3) → ``prob`` (N, H', W'), ``reg`` (N, 4, H', W').

    ``precise`` (the torch engine turns it on): the softmax in float64, rounded once to
    float32. Near saturation float32 rounds e.g. 0.99999994 up to 1.0, which makes score ties
    that ONNX Runtime's (closer) result does not, and ties decide which box an NMS keeps."""

    precise = False

    def __init__(self, net: PNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.precise:
            reg, prob = self.net(_normalise(image))
            return prob[:, 1], reg
        n = self.net
        x = n.pool1(n.prelu1(n.conv1(_normalise(image))))
        x = n.prelu3(n.conv3(n.prelu2(n.conv2(x))))
        prob = torch.softmax(n.conv4_1(x).double(), dim=1)[:, 1].float()
        return prob, n.conv4_2(x)


class RNetWrapped(nn.Module):
    """``image`` float32 (N, 24, 24, 3) → ``prob`` (N,), ``reg`` (N, 4)."""

    def __init__(self, net: RNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, prob = self.net(_normalise(image))
        return prob[:, 1], reg


class ONetWrapped(nn.Module):
    """``image`` float32 (N, 48, 48, 3) → ``prob`` (N,), ``reg`` (N, 4), ``points`` (N, 10).

    ``points`` holds 5 x fractions then 5 y fractions of the (square) input box.
    """

    def __init__(self, net: ONet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reg, points, prob = self.net(_normalise(image))
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
