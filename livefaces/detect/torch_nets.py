"""The three MTCNN networks in PyTorch (same layer names as facenet-pytorch's state dicts).

Only the exporter (``scripts/export_onnx.py``), the tests and the optional torch engine import
this module; running livefaces never needs torch.

The ``*Wrapped`` modules are what gets exported: they take **float32 NHWC RGB** images (values 0-255), do the
``(x - 127.5) / 128`` normalisation and the NHWC→NCHW transpose inside the graph, and return
only the face probability, so the numpy side never touches pixel data after resizing.
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


class ReluPReLU(nn.Module):
    """``PReLU`` rewritten as ``a*x + (1-a)*relu(x)`` (equal up to float rounding).

    ONNX Runtime's ``PRelu`` kernel with per-channel slopes is slow on CPU (it took 36-43 % of
    each network's time and forces a layout change around it); this form runs as a fused
    ``Relu`` plus two per-channel multiplies that stay in the blocked NCHWc layout. Measured on
    one core: P-Net over a 1080p pyramid 148 -> 97 ms, R-Net (800 crops) 72 -> 38 ms, O-Net
    (50 crops) 20 -> 10 ms.
    """

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.register_buffer("slope", prelu.weight.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope: torch.Tensor = self.slope  # type: ignore[assignment]  # a registered buffer
        a = slope.view((1, -1) + (1,) * (x.dim() - 2))
        return a * x + (1 - a) * torch.relu(x)


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


def pad_first_layer(net: nn.Module, block: int = 16) -> nn.Module:
    """A copy of ``net`` whose ``conv1`` has a multiple of ``block`` output channels: the extra
    filters are zero (bias 0, PReLU slope 0) and ``conv2`` gives them zero weights, so the
    outputs are the same (up to summation order in the kernels).

    ONNX Runtime's blocked NCHWc layout (16 channels with AVX-512) pools only tensors whose
    channel count is a multiple of the block: R-Net's 28 channels made it reorder to NCHW
    around ``pool1`` and back. Padded to 32, 16 crops on one core (Intel Xeon, Sapphire
    Rapids): 0.77 -> 0.67 ms. P-Net (10 -> 16) gained nothing (2.82 vs 2.83 ms per 1080p band)
    and is left as it is.
    """
    import copy

    out = copy.deepcopy(net)
    c1, p1, c2 = out.conv1, out.prelu1, out.conv2  # type: ignore[union-attr]
    assert isinstance(c1, nn.Conv2d) and isinstance(p1, nn.PReLU) and isinstance(c2, nn.Conv2d)
    n = c1.out_channels
    m = -(-n // block) * block
    if m == n:
        return out
    with torch.no_grad():
        conv1 = nn.Conv2d(c1.in_channels, m, c1.kernel_size)  # type: ignore[arg-type]
        conv1.weight.zero_()
        conv1.weight[:n] = c1.weight
        assert conv1.bias is not None and c1.bias is not None
        conv1.bias.zero_()
        conv1.bias[:n] = c1.bias
        prelu1 = nn.PReLU(m)
        prelu1.weight.zero_()
        prelu1.weight[:n] = p1.weight
        conv2 = nn.Conv2d(m, c2.out_channels, c2.kernel_size)  # type: ignore[arg-type]
        conv2.weight.zero_()
        conv2.weight[:, :n] = c2.weight
        assert conv2.bias is not None and c2.bias is not None
        conv2.bias.copy_(c2.bias)
    out.conv1, out.prelu1, out.conv2 = conv1, prelu1, conv2
    return out


def export_form(net: nn.Module) -> nn.Module:
    """A copy of ``net`` rewritten for fast ONNX Runtime execution (same outputs to ~1e-6):
    every ``PReLU`` becomes :class:`ReluPReLU`, the face/not-face softmax becomes
    :class:`FaceLogit`, R-Net's first layer is padded to 32 channels
    (:func:`pad_first_layer`)."""
    import copy

    out = pad_first_layer(net) if isinstance(net, RNet) else copy.deepcopy(net)
    for name, child in list(out.named_children()):
        if isinstance(child, nn.PReLU):
            setattr(out, name, ReluPReLU(child))
    for layer, softmax in (("conv4_1", "softmax4_1"), ("dense5_1", "softmax5_1"), ("dense6_1", "softmax6_1")):
        if hasattr(out, layer):
            setattr(out, layer, FaceLogit(getattr(out, layer)))
            setattr(out, softmax, _Identity())
    return out.eval()


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """NHWC pixels 0-255 (float32) → NCHW in MTCNN's input range."""
    return ((x - 127.5) * 0.0078125).permute(0, 3, 1, 2)


class PNetWrapped(nn.Module):
    """``image`` float32 (N, H, W, 3) → ``prob`` (N, H', W'), ``reg`` (N, 4, H', W')."""

    def __init__(self, net: PNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, prob = self.net(_normalise(image))
        return prob[:, 1], reg


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
