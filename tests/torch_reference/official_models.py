"""The papers' networks in PyTorch, in the layout of each paper's official code (module names, state_dict keys and
shapes, paddings, orders), written independently of edgebnn's Keras models to test ``edgebnn import`` against.

Run under /usr/bin/python3 (Debian's torch 1.13); edgebnn itself never imports this file. Forward only (eval): the
activations' sign is ``torch.sign`` (sign(0) = 0, as the official code; the official ``BinaryActivation`` computes
``sign.detach() - f.detach() + f``, which is sign(x) up to one float rounding: here it is sign(x) exactly).

Sources (facts, not code): liuzechun/ReActNet@a6cd08d (mobilenet/*/reactnet.py, resnet/*/birealnet.py),
liuzechun/Bi-Real-net@f58aa4d (pytorch_implementation/BiReal18_34/birealnet.py), pingxue-hfut/SD-BNN@20710da
(imagenet/birealnet.py, cifar10/*), 1adrianb/binary-networks-pytorch@51bdeee (bnn/models/resnet.py,
bnn/models/layers/res_block.py, bnn/ops.py, examples/recepies/imagenet-baseline.yaml).

Channel counts follow edgebnn's width multiplier, ``channels(c, w) = c if w == 1 else max(8, round(c w / 8) * 8)``,
applied to every stage width, so that small widths give fast tests with the official layout.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

REACTNET_A_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
BIREAL_DEPTHS = {18: (4, 4, 4, 4), 34: (6, 8, 12, 6)}
RESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
STAGE_FILTERS = (64, 128, 256, 512)


def channels(c: int, width: float) -> int:
    """edgebnn's width multiplier (edgebnn/archs/common.py): a multiple of 8, at least 8."""
    if width == 1.0:
        return c
    return max(8, int(round(c * width / 8.0)) * 8)


# ------------------------------------------------------------------------------------------ shared pieces
class LearnableBias(nn.Module):
    """ReActNet's ``move``: x + b, b of shape (1, C, 1, 1)."""

    def __init__(self, c: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return x + self.bias


def magnitude_aware(w: torch.Tensor) -> torch.Tensor:
    """mean(|W_o|) * sign(W), the mean over each output channel's c_in x kh x kw weights."""
    return w.abs().mean(dim=(1, 2, 3), keepdim=True) * torch.sign(w)


class HardBinaryConv(nn.Module):
    """Bi-Real/ReActNet's binary conv on an already binarised input, zero padding. ``layout`` "flat": parameter
    ``weights`` (O*I*k*k, 1) viewed as (O, I, k, k) (Bi-Real, ReActNet-A, ReActNet-18 before a3c603b); "4d":
    parameter ``weight`` (O, I, k, k) (ReActNet-18 now)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 layout: str = "flat"):
        super().__init__()
        self.stride, self.padding, self.layout = stride, padding, layout
        self.shape = (cout, cin, kernel_size, kernel_size)
        if layout == "flat":
            self.weights = nn.Parameter(torch.zeros(cout * cin * kernel_size * kernel_size, 1))
        else:
            self.weight = nn.Parameter(torch.zeros(self.shape))

    def real_weights(self) -> torch.Tensor:
        return self.weights.view(self.shape) if self.layout == "flat" else self.weight

    def forward(self, x):
        return F.conv2d(x, magnitude_aware(self.real_weights()), stride=self.stride, padding=self.padding)


def binary_or_real_conv(cin, cout, kernel_size, stride, *, step: int, layout: str) -> nn.Module:
    """Step 2: HardBinaryConv. Step 1 (ReActNet's ``1_step1``): a plain ``nn.Conv2d`` (4-D ``weight``) on the
    binarised input."""
    padding = kernel_size // 2
    if step == 1:
        return nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
    return HardBinaryConv(cin, cout, kernel_size, stride, padding, layout=layout)


class SELayer(nn.Module):
    """SD-BNN's ASD branch: sigmoid(W2 ReLU(W1 GAP(x))), keys ``fc.0.weight`` (C/r, C), ``fc.2.weight`` (C, C/r).
    Hidden size max(1, C // r) as edgebnn (the official C // r is 0 when C < r)."""

    def __init__(self, c: int, ratio: int):
        super().__init__()
        hidden = max(1, c // ratio)
        self.fc = nn.Sequential(nn.Linear(c, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, c, bias=False),
                                nn.Sigmoid())

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3))).view(x.shape[0], x.shape[1], 1, 1)


def wsd_weights(w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """SD-BNN's WSD: sign(w + sigmoid(alpha_o) * 0.01 * mean(w_o)), the signed mean over c_in x kh x kw, no scale."""
    mw = 0.01 * w.mean(dim=(1, 2, 3), keepdim=True)
    return torch.sign(w + torch.sigmoid(alpha).view(-1, 1, 1, 1) * mw)


# ------------------------------------------------------------------------------------------- ReActNet-A
class FirstConv3x3(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn1(self.conv1(x))


class ReActNetABlock(nn.Module):
    """move11 -> sign -> binary_3x3 -> bn1 -> + (x or AvgPool2d(2, 2) x) -> move12 -> prelu1 -> move13; then
    move21 -> sign -> binary_pw -> bn2 -> + out1 (or two halves binary_pw_down1/2, bn2_1/2, concatenated) -> move22
    -> prelu2 -> move23."""

    def __init__(self, cin: int, cout: int, stride: int, *, step: int, layout: str):
        super().__init__()
        self.stride, self.cin, self.cout = stride, cin, cout
        self.move11 = LearnableBias(cin)
        self.binary_3x3 = binary_or_real_conv(cin, cin, 3, stride, step=step, layout=layout)
        self.bn1 = nn.BatchNorm2d(cin)
        self.move12, self.prelu1, self.move13 = LearnableBias(cin), nn.PReLU(cin), LearnableBias(cin)
        self.move21 = LearnableBias(cin)
        if cin == cout:
            self.binary_pw = binary_or_real_conv(cin, cout, 1, 1, step=step, layout=layout)
            self.bn2 = nn.BatchNorm2d(cout)
        else:
            assert cout == 2 * cin, (cin, cout)
            self.binary_pw_down1 = binary_or_real_conv(cin, cin, 1, 1, step=step, layout=layout)
            self.binary_pw_down2 = binary_or_real_conv(cin, cin, 1, 1, step=step, layout=layout)
            self.bn2_1, self.bn2_2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cin)
        self.move22, self.prelu2, self.move23 = LearnableBias(cout), nn.PReLU(cout), LearnableBias(cout)
        if cin != cout:
            self.pooling = nn.AvgPool2d(2, 2)

    def forward(self, x):
        out1 = self.bn1(self.binary_3x3(torch.sign(self.move11(x))))
        if self.stride == 2:
            x = self.pooling(x)
        out1 = self.move13(self.prelu1(self.move12(x + out1)))
        b = torch.sign(self.move21(out1))
        if self.cin == self.cout:
            out2 = self.bn2(self.binary_pw(b)) + out1
        else:
            out2 = torch.cat([self.bn2_1(self.binary_pw_down1(b)) + out1,
                              self.bn2_2(self.binary_pw_down2(b)) + out1], dim=1)
        return self.move23(self.prelu2(self.move22(out2)))


class ReActNetA(nn.Module):
    """feature.0 = stem (3x3 s2 p1 + BN), feature.1-13 = blocks, pool1, fc. Stride 2 where the official (unscaled)
    channel list changes, except to 64."""

    def __init__(self, num_classes: int = 1000, *, width: float = 1.0, step: int = 2, layout: str = "flat"):
        super().__init__()
        self.channels = [channels(c, width) for c in REACTNET_A_CHANNELS]
        self.feature = nn.ModuleList([FirstConv3x3(3, self.channels[0], 2)])
        for i in range(1, len(REACTNET_A_CHANNELS)):
            prev, cur = REACTNET_A_CHANNELS[i - 1], REACTNET_A_CHANNELS[i]
            stride = 2 if prev != cur and cur != 64 else 1
            self.feature.append(ReActNetABlock(self.channels[i - 1], self.channels[i], stride, step=step,
                                               layout=layout))
        self.pool1 = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.channels[-1], num_classes)

    def forward(self, x):
        for block in self.feature:
            x = block(x)
        return self.fc(torch.flatten(self.pool1(x), 1))


# ------------------------------------------------------------------ the Bi-Real layout and its three blocks
class BiRealBlock(nn.Module):
    """Bi-Real: sign -> binary_conv (flat ``weights``) -> bn1 -> + residual (downsample(x) when set)."""

    def __init__(self, cin, cout, stride=1, downsample=None, *, layout: str = "flat", **_):
        super().__init__()
        self.binary_conv = HardBinaryConv(cin, cout, 3, stride, 1, layout=layout)
        self.bn1 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return self.bn1(self.binary_conv(torch.sign(x))) + residual


class ReActResNetBlock(nn.Module):
    """ReAct-ResNet: move0 -> sign -> binary_conv -> bn1 -> + residual -> move1 -> prelu -> move2."""

    def __init__(self, cin, cout, stride=1, downsample=None, *, layout: str = "4d", step: int = 2):
        super().__init__()
        self.move0 = LearnableBias(cin)
        self.binary_conv = binary_or_real_conv(cin, cout, 3, stride, step=step, layout=layout)
        self.bn1 = nn.BatchNorm2d(cout)
        self.move1, self.prelu, self.move2 = LearnableBias(cout), nn.PReLU(cout), LearnableBias(cout)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.binary_conv(torch.sign(self.move0(x)))) + residual
        return self.move2(self.prelu(self.move1(out)))


class SDHardBinaryConv(nn.Module):
    """SD-BNN ImageNet's binary conv: flat ``weights`` (O*I*9, 1), WSD ``alpha`` (O,), ASD ``beta`` (SELayer, r=8):
    x + beta(x) -> sign -> conv with WSD weights (step 2; step 1: the real weights). The published stage-2 weight
    binarisation sits inside a string literal; this is the paper's WSD (see ``wsd_weights``)."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, padding=1, *, step: int = 2, ratio: int = 8):
        super().__init__()
        self.stride, self.padding, self.step = stride, padding, step
        self.shape = (cout, cin, kernel_size, kernel_size)
        self.weights = nn.Parameter(torch.zeros(cout * cin * kernel_size * kernel_size, 1))
        self.alpha = nn.Parameter(torch.zeros(cout))
        self.beta = SELayer(cin, ratio)

    def binary_weights(self) -> torch.Tensor:
        w = self.weights.view(self.shape)
        return wsd_weights(w, self.alpha) if self.step == 2 else w

    def forward(self, x):
        bx = torch.sign(x + self.beta(x))
        return F.conv2d(bx, self.binary_weights(), stride=self.stride, padding=self.padding)


class SDBNNImageNetBlock(nn.Module):
    """SD-BNN ImageNet: binary_conv (ASD, sign, WSD) -> bn1 -> + residual -> prelu."""

    def __init__(self, cin, cout, stride=1, downsample=None, *, step: int = 2, **_):
        super().__init__()
        self.binary_conv = SDHardBinaryConv(cin, cout, 3, stride, 1, step=step)
        self.bn1 = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return self.prelu(self.bn1(self.binary_conv(x)) + residual)


class BiRealNet(nn.Module):
    """conv1 7x7 s2 p3 -> bn1 -> maxpool 3x3 s2 p1 -> layer1-4 (downsample = AvgPool2d(2, stride) -> conv1x1 -> BN
    where the shape changes) -> avgpool -> fc."""

    def __init__(self, block, depth: int = 18, num_classes: int = 1000, *, width: float = 1.0, **block_kwargs):
        super().__init__()
        self.channels = [channels(c, width) for c in STAGE_FILTERS]
        self.inplanes = self.channels[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (n, planes) in enumerate(zip(BIREAL_DEPTHS[depth], self.channels, strict=True), start=1):
            setattr(self, f"layer{i}", self._make_layer(block, planes, n, 1 if i == 1 else 2, block_kwargs))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.channels[-1], num_classes)

    def _make_layer(self, block, planes, n, stride, block_kwargs):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.AvgPool2d(2, stride), nn.Conv2d(self.inplanes, planes, 1, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [block(self.inplanes, planes, stride, downsample, **block_kwargs)]
        self.inplanes = planes
        layers += [block(planes, planes, **block_kwargs) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------------------- SD-BNN CIFAR-10
class IRConv2d(nn.Conv2d):
    """SD-BNN CIFAR's binary conv (IR-Net's, with SD-BNN's additions): ``weight`` 4-D, WSD ``alpha`` (O,), ASD
    ``dybeta`` (SELayer, r=16): sign(x + dybeta(x)) conv sign(WSD(w)), zero padding. EDE's k and t are plain
    attributes (not in the state_dict) and do not change the forward."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, padding=1, ratio: int = 16):
        super().__init__(cin, cout, kernel_size, stride, padding, bias=False)
        self.k, self.t = torch.tensor([10.0]), torch.tensor([0.1])
        self.alpha = nn.Parameter(torch.zeros(cout))
        self.dybeta = SELayer(cin, ratio)

    def forward(self, x):
        ba = torch.sign(x + self.dybeta(x))
        return F.conv2d(ba, wsd_weights(self.weight, self.alpha), None, self.stride, self.padding)


def option_a(x: torch.Tensor, planes: int) -> torch.Tensor:
    """ResNet's option-A shortcut: x[:, :, ::2, ::2], zero channels padded on both sides (planes // 4 each side in
    the official code, which assumes planes = 2 C_in; here (planes - C_in) split as edgebnn, the same there)."""
    extra = planes - x.shape[1]
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))


class ResNet20Block(nn.Module):
    """BasicBlock_1w1a: bn1(conv1 x) + shortcut -> hardtanh -> bn2(conv2) + that -> hardtanh."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = IRConv2d(cin, planes, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = IRConv2d(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.planes, self.downsamples = planes, stride != 1 or cin != planes

    def forward(self, x):
        shortcut = option_a(x, self.planes) if self.downsamples else x
        x1 = F.hardtanh(self.bn1(self.conv1(x)) + shortcut)
        return F.hardtanh(self.bn2(self.conv2(x1)) + x1)


class CifarResNet18Block(nn.Module):
    """BasicBlock: hardtanh(bn1(conv1 x)) -> bn2(conv2) + shortcut -> hardtanh; shortcut = 1x1 s conv + BN."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = IRConv2d(cin, planes, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = IRConv2d(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        return F.hardtanh(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """SD-BNN CIFAR ResNet: conv1 3x3 -> bn1 -> hardtanh -> layers -> average pool -> bn2 (BatchNorm1d) ->
    linear. ResNet-20 pools over the whole map; ResNet-18 uses avg_pool2d(4), the whole map at 32 px."""

    def __init__(self, block, depths, filters, num_classes=10, *, width: float = 1.0):
        super().__init__()
        self.channels = [channels(c, width) for c in filters]
        self.in_planes = self.channels[0]
        self.conv1 = nn.Conv2d(3, self.in_planes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.in_planes)
        for i, (n, planes) in enumerate(zip(depths, self.channels, strict=True), start=1):
            layers = []
            for s in [1 if i == 1 else 2] + [1] * (n - 1):
                layers.append(block(self.in_planes, planes, s))
                self.in_planes = planes
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.n_layers = len(depths)
        self.bn2 = nn.BatchNorm1d(self.channels[-1])
        self.linear = nn.Linear(self.channels[-1], num_classes)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        for i in range(1, self.n_layers + 1):
            out = getattr(self, f"layer{i}")(out)
        out = F.avg_pool2d(out, out.shape[3]).flatten(1)
        return self.linear(self.bn2(out))


class VGGSmall1W1A(nn.Module):
    """conv0 (real) -> bn0 -> hardtanh; conv1 -> pool -> bn1; conv2 -> bn2; conv3 -> pool -> bn3; conv4 -> bn4;
    conv5 -> pool -> bn5 (each then hardtanh) -> flatten (NCHW order: C, H, W) -> fc (with bias)."""

    def __init__(self, num_classes=10, *, width: float = 1.0, input_size: int = 32):
        super().__init__()
        self.channels = [channels(c, width) for c in (128, 128, 256, 256, 512, 512)]
        c = self.channels
        self.conv0 = nn.Conv2d(3, c[0], 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c[0])
        for i in range(1, 6):
            setattr(self, f"conv{i}", IRConv2d(c[i - 1], c[i], 3, 1, 1))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c[i]))
        self.pooling = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(c[5] * (input_size // 8) ** 2, num_classes)

    def forward(self, x):
        x = F.hardtanh(self.bn0(self.conv0(x)))
        for i in range(1, 6):
            x = getattr(self, f"conv{i}")(x)
            if i in (1, 3, 5):
                x = self.pooling(x)
            x = F.hardtanh(getattr(self, f"bn{i}")(x))
        return self.fc(x.flatten(1))


# ------------------------------------------------------------------------------ the bnn library's ResNet-18
class BasicScale(nn.Module):
    """bnn's ``BasicScaleBinarizer``: the conv output times ``alpha`` (1, C, 1, 1)."""

    def __init__(self, c: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, layer_out, layer_in=None):
        return layer_out * self.alpha


class BnnConv2d(nn.Conv2d):
    """bnn's binarised Conv2d under ``imagenet-baseline.yaml``: sign(input) (``BasicInputBinarizer``) conv
    weight_pre_process(W) then ``activation_post_process`` (the learned scale). Step 2 (the library's step 1):
    sign(W), no scale (``XNORWeightBinarizer(compute_alpha=False)``); step 1 (library step 0): W."""

    def __init__(self, cin, cout, stride=1, *, step: int = 2):
        super().__init__(cin, cout, 3, stride, 1, bias=False)
        self.step = step
        self.activation_post_process = BasicScale(cout)

    def forward(self, x):
        w = torch.sign(self.weight) if self.step == 2 else self.weight
        return self.activation_post_process(F.conv2d(torch.sign(x), w, None, self.stride, self.padding), x)


class PreBasicBlock(nn.Module):
    """bn1 -> conv1 -> act1 (PReLU) -> bn2 -> conv2 -> act2 -> + identity (downsample(x) when set)."""

    def __init__(self, cin, planes, stride=1, downsample=None, *, step: int = 2):
        super().__init__()
        self.conv1 = BnnConv2d(cin, planes, stride, step=step)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = BnnConv2d(planes, planes, 1, step=step)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act1, self.act2 = nn.PReLU(planes), nn.PReLU(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.act1(self.conv1(self.bn1(x)))
        out = self.act2(self.conv2(self.bn2(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class BnnResNet(nn.Module):
    """torchvision names: conv1 7x7 s2 p3 (real) -> bn1 -> relu -> maxpool -> layer1-4 -> avgpool -> fc (real).
    downsample = AvgPool2d(stride, ceil_mode, count_include_pad=False) -> conv1x1 (real) -> BN."""

    def __init__(self, depth=18, num_classes=1000, *, width: float = 1.0, step: int = 2):
        super().__init__()
        self.channels = [channels(c, width) for c in STAGE_FILTERS]
        self.inplanes = self.channels[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (n, planes) in enumerate(zip(RESNET_DEPTHS[depth], self.channels, strict=True), start=1):
            stride = 1 if i == 1 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = nn.Sequential(
                    nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                    nn.Conv2d(self.inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes))
            layers = [PreBasicBlock(self.inplanes, planes, stride, downsample, step=step)]
            self.inplanes = planes
            layers += [PreBasicBlock(planes, planes, step=step) for _ in range(1, n)]
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.channels[-1], num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
