"""Write an official-layout PyTorch checkpoint with random weights, an input batch and the reference logits.

    /usr/bin/python3 tests/torch_reference/make_reference.py NAME --out DIR [--input-size S] [--num-classes N]
        [--width W] [--seed K] [--container zip|legacy] [--binary-layout flat|4d] [--step 1|2] [--batch B]
        [--final] [--sensitivity KEY[=VALUE] ...]

Writes DIR/checkpoint.pth.tar (the dict the official trainer saves, from an ``nn.DataParallel`` model: keys start
``module.``), DIR/input.npy (N, 3, S, S) float32 as fed to torch, DIR/output.npy (the logits, float32) and
DIR/info.json (the settings, every state_dict key with its shape, the channel counts, notes).

Every parameter and buffer is random and reproducible from the seed: BN statistics come from one pass over a random
calibration batch, then are perturbed; learnable biases, PReLU slopes, scales and WSD alphas are away from their
initial values. Binary convs' latent weights get per-output-channel magnitudes (so a wrong magnitude-aware scale
shows) and SD-BNN's WSD gets weights planted where the sign of w + sigmoid(alpha_o) 0.01 mean(w_o) depends on alpha.
The forward runs in float64 on the float32 weights (the checkpoint holds float32, as the official trainers save);
the logits are saved as float32. Run under /usr/bin/python3 (Debian's torch 1.13); edgebnn never imports this.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_models as om  # noqa: E402

REACTNET_SAVE = "reactnet"  # {epoch, state_dict, best_top1_acc, optimizer}
CIFAR_SAVE = "sdbnn-cifar"  # {epoch, state_dict, best_prec1}
BNN_SAVE = "bnn"  # {epoch, arch, state_dict, best_acc1, optimizer}


@dataclass(frozen=True)
class Layout:
    """One official network: how to build it, its defaults and how its trainer saves it."""

    source: str
    build: object
    input_size: int = 224
    num_classes: int = 1000
    save: str = REACTNET_SAVE
    layouts: tuple = ()  # binary weight layouts it can take; first = the default
    steps: tuple = (2,)  # training steps it can be saved from; last = the default
    notes: list = field(default_factory=list)


def _bireal_like(block, depth):
    def build(a):
        kwargs = {}
        if a.binary_layout:
            kwargs["layout"] = a.binary_layout
        if block is not om.BiRealBlock:
            kwargs["step"] = a.step
        return om.BiRealNet(block, depth, a.num_classes, width=a.width, **kwargs)

    return build


SDBNN_18_NOTE = ("imagenet/birealnet.py as published cannot run stage 2 (its weight binarisation is inside a string "
                 "literal): step 2 here uses the paper's WSD, sign(w + sigmoid(alpha_o) * 0.01 * mean(w_o)) with the "
                 "signed mean over c_in x kh x kw and no scale; step 1 uses the real weights. The repository has no "
                 "ImageNet trainer: saved as ReActNet's trainer saves (utils.save_checkpoint is the same function).")
ASD_NOTE = "ASD hidden size max(1, C // r) as edgebnn; the official C // r is 0 when C < r."
SIGN_NOTE = "sign is torch.sign: sign(0) = 0 (zero padding of the binarised input stays 0)."

LAYOUTS = {
    "reactnet-a": Layout(
        "liuzechun/ReActNet@a6cd08d mobilenet/{1_step1,2_step2}/reactnet.py",
        lambda a: om.ReActNetA(a.num_classes, width=a.width, step=a.step, layout=a.binary_layout or "flat"),
        layouts=("flat",), steps=(1, 2),
        notes=["step 1: binary_3x3 / binary_pw are nn.Conv2d (4-D weight) on the binarised input."]),
    "reactnet-18": Layout(
        "liuzechun/ReActNet@a6cd08d resnet/{1_step1,2_step2}/birealnet.py",
        _bireal_like(om.ReActResNetBlock, 18), layouts=("4d", "flat"), steps=(1, 2),
        notes=["binary_conv.weight 4-D since a3c603b; --binary-layout flat gives the earlier weights (N, 1)."]),
    "bireal-18": Layout("liuzechun/Bi-Real-net@f58aa4d pytorch_implementation/BiReal18_34/birealnet.py",
                        _bireal_like(om.BiRealBlock, 18), layouts=("flat",)),
    "bireal-34": Layout("liuzechun/Bi-Real-net@f58aa4d pytorch_implementation/BiReal18_34/birealnet.py",
                        _bireal_like(om.BiRealBlock, 34), layouts=("flat",)),
    "sdbnn-18": Layout("pingxue-hfut/SD-BNN@20710da imagenet/birealnet.py", _bireal_like(om.SDBNNImageNetBlock, 18),
                       steps=(1, 2), notes=[SDBNN_18_NOTE, ASD_NOTE]),
    "sdbnn-resnet20": Layout(
        "pingxue-hfut/SD-BNN@20710da cifar10/ResNet20/{resnet.py,modules/ir_1w1a.py}",
        lambda a: om.CifarResNet(om.ResNet20Block, (3, 3, 3), (16, 32, 64), a.num_classes, width=a.width),
        32, 10, CIFAR_SAVE, notes=[ASD_NOTE, "option-A shortcut pads (planes - C_in) split in two (official: "
                                   "planes // 4 each side, the same when planes = 2 C_in)."]),
    "sdbnn-resnet18": Layout(
        "pingxue-hfut/SD-BNN@20710da cifar10/ResNet18/{resnet.py,ir_1w1a.py}",
        lambda a: om.CifarResNet(om.CifarResNet18Block, (2, 2, 2, 2), om.STAGE_FILTERS, a.num_classes,
                                 width=a.width),
        32, 10, CIFAR_SAVE, notes=[ASD_NOTE, "head pools the whole map (official avg_pool2d(4): the same at 32 px)."]),
    "sdbnn-vgg-small": Layout(
        "pingxue-hfut/SD-BNN@20710da cifar10/VGG-Small/{vgg.py,modules/ir_1w1a.py}",
        lambda a: om.VGGSmall1W1A(a.num_classes, width=a.width, input_size=a.input_size),
        32, 10, CIFAR_SAVE, notes=[ASD_NOTE, "fc.weight columns are in NCHW flatten order (C, H, W)."]),
    "xnorpp-18-bnn": Layout(
        "1adrianb/binary-networks-pytorch@51bdeee bnn/models/resnet.py + PreBasicBlock, PReLU, "
        "examples/recepies/imagenet-baseline.yaml",
        lambda a: om.BnnResNet(18, a.num_classes, width=a.width, step=a.step), save=BNN_SAVE, steps=(1, 2),
        notes=["step 2 = the library's step 1 (sign(W), no scale); step 1 = its step 0 (real W); input sign always; "
               "first conv, fc and the downsample 1x1 convs real."]),
}


# ---------------------------------------------------------------------------------------- randomisation
def _uniform(g, shape, lo, hi):
    return torch.rand(shape, generator=g) * (hi - lo) + lo


def _normal(g, shape, std):
    return torch.randn(shape, generator=g) * std


def _binary_latent(g, shape, *, centred: bool = True):
    """Latent weights N(m_o, s_o) within about [-1, 1], magnitude varying per output channel (and a per-channel
    mean when not ``centred``, for WSD)."""
    out = shape[0]
    scale = _uniform(g, (out, 1, 1, 1), 0.02, 0.3)
    w = torch.randn(shape, generator=g) * scale
    if not centred:
        w = w + _uniform(g, (out, 1, 1, 1), 0.3, 1.0) * scale * torch.sign(torch.randn((out, 1, 1, 1), generator=g))
    return w


def _plant_wsd(g, w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Set a few weights per output channel to -t 0.01 mean(w_o) sigmoid(alpha_o), t in (0.1, 0.9): their sign
    flips under WSD's shift (and with alpha = 0, only where t < 0.5), so a lost or misplaced alpha shows."""
    w = w.clone()
    flat = w.view(w.shape[0], -1)
    k = max(1, flat.shape[1] // 16)
    for o in range(flat.shape[0]):
        idx = torch.randperm(flat.shape[1], generator=g)[:k]
        flat[o, idx] = 0.0
        t = _uniform(g, (k,), 0.1, 0.9)
        flat[o, idx] = -t * 0.01 * flat[o].mean() * torch.sigmoid(alpha[o])
    return w


def own_shape(m: nn.Module) -> tuple:
    """The stored shape of a HardBinaryConv's latent weights: (N, 1) flat or (O, I, k, k)."""
    return (m.weights if m.layout == "flat" else m.weight).shape


def _randomise_module(g, m: nn.Module) -> list:
    """Random values for one module's own parameters; returns the tensors it set."""
    own = dict(m.named_parameters(recurse=False))
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        m.weight.data = _uniform(g, m.weight.shape, 0.5, 1.5)
        m.bias.data = _normal(g, m.bias.shape, 0.2)
    elif isinstance(m, nn.PReLU):
        m.weight.data = _uniform(g, m.weight.shape, 0.05, 0.6)
    elif isinstance(m, om.LearnableBias):
        m.bias.data = _normal(g, m.bias.shape, 0.3)
    elif isinstance(m, om.BasicScale):  # a scale for sign(W) conv sign(x): about 1 / sqrt(fan_in)
        fan_in = m.alpha.numel() * 9
        m.alpha.data = _uniform(g, m.alpha.shape, 0.5, 1.5) / fan_in ** 0.5
    elif isinstance(m, om.HardBinaryConv):
        latent = _binary_latent(g, m.shape)
        (m.weights if m.layout == "flat" else m.weight).data = latent.reshape(own_shape(m))
    elif isinstance(m, om.SDHardBinaryConv):
        m.alpha.data = _normal(g, m.alpha.shape, 1.5)
        m.weights.data = _plant_wsd(g, _binary_latent(g, m.shape, centred=False), m.alpha.data).reshape(-1, 1)
    elif isinstance(m, om.IRConv2d):
        m.alpha.data = _normal(g, m.alpha.shape, 1.5)
        m.weight.data = _plant_wsd(g, _binary_latent(g, m.weight.shape, centred=False), m.alpha.data)
    elif isinstance(m, om.BnnConv2d):
        m.weight.data = _binary_latent(g, m.weight.shape)
    elif isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.data = _normal(g, m.weight.shape, (2.0 / fan_in) ** 0.5) * _uniform(g, (m.out_channels, 1, 1, 1),
                                                                                     0.5, 1.5)
    elif isinstance(m, nn.Linear):  # heads and SD-BNN's SE layers
        m.weight.data = _normal(g, m.weight.shape, 2.0 / m.in_features ** 0.5)
        if m.bias is not None:
            m.bias.data = _normal(g, m.bias.shape, 0.1)
    return list(own.values())


def randomise(model: nn.Module, g: torch.Generator) -> None:
    """Random values for every parameter; raises if a parameter is left at its initial value or a buffer is not
    BatchNorm's (which ``calibrate_batch_norm`` sets)."""
    done = set()
    for m in model.modules():
        done.update(id(p) for p in _randomise_module(g, m))
    missed = [n for n, p in model.named_parameters() if id(p) not in done]
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    bn_buffers = {id(b) for m in bns for b in m.buffers()}
    missed += [n for n, b in model.named_buffers() if id(b) not in bn_buffers]  # BN's are set by the calibration
    if missed:
        raise RuntimeError(f"parameters left unrandomised: {missed}")


def activate_se(model: nn.Module, images: torch.Tensor, rounds: int = 4) -> None:
    """Negate each SE row W1_j whose hidden unit ReLU(W1_j GAP(a)) is 0 for every image, so that every ASD branch
    depends on both its matrices (a dead hidden unit would hide a wrong W1 or W2). Eval mode, on the images the
    reference is computed on; repeated because a change upstream moves the inputs downstream."""
    model.eval()
    layers = [m for m in model.modules() if isinstance(m, om.SELayer)]
    seen = {}
    hooks = [se.register_forward_hook(lambda mod, inp, out: seen.__setitem__(mod, inp[0].mean(dim=(2, 3))))
             for se in layers]
    try:
        for _ in range(rounds):
            with torch.no_grad():
                model(images)
            changed = False
            for se in layers:
                w1 = se.fc[0].weight.data
                dead = (seen[se] @ w1.T).max(dim=0).values <= 0
                if dead.any():
                    w1[dead] = -w1[dead]
                    changed = True
            if not changed:
                break
    finally:
        for hook in hooks:
            hook.remove()


def calibrate_batch_norm(model: nn.Module, images: torch.Tensor, g: torch.Generator) -> None:
    """Running statistics from one pass over ``images``, then perturbed (mean by 0.2 std,
    variance by 0.7-1.4x), and a random num_batches_tracked: no BN at its init, activations in a sane range."""
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        model(images)
    model.eval()
    for bn in bns:
        bn.momentum = 0.1
        std = bn.running_var.sqrt()
        bn.running_mean += 0.2 * std * torch.randn(std.shape, generator=g)
        bn.running_var *= _uniform(g, std.shape, 0.7, 1.4)
        bn.num_batches_tracked.fill_(int(torch.randint(1000, 100000, (1,), generator=g)))


# ------------------------------------------------------------------------------------------- the checkpoint
def _optimizer(model: nn.Module, save: str) -> torch.optim.Optimizer:
    """The official trainer's optimizer, stepped once on random gradients so its state holds tensors like a real
    checkpoint's. ReActNet/Bi-Real: Adam, conv kernels (4-D or named conv) in a second group with weight decay;
    bnn: AdamW (examples/imagenet.py's default)."""
    if save == BNN_SAVE:
        opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=1e-2)
    else:
        weights = [p for n, p in model.named_parameters() if p.ndimension() == 4 or "conv" in n]
        ids = {id(p) for p in weights}
        others = [p for p in model.parameters() if id(p) not in ids]
        opt = torch.optim.Adam([{"params": others}, {"params": weights, "weight_decay": 1e-5}], lr=1e-3)
    g = torch.Generator().manual_seed(12345)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    opt.step()
    opt.zero_grad()
    return opt


def checkpoint_dict(wrapped: nn.DataParallel, save: str, optimizer, final: bool = False) -> dict:
    """The dict each official trainer passes to torch.save (``final``: SD-BNN CIFAR's model.th, written after the
    last epoch without one)."""
    state = wrapped.state_dict()
    if save == CIFAR_SAVE:  # cifar10/*/trainer.py, VGG-Small/main.py: best_prec1 is a 0-d tensor there too
        if final:
            return {"state_dict": state, "best_prec1": torch.tensor(90.8)}
        return {"epoch": 400, "state_dict": state, "best_prec1": torch.tensor(90.8)}
    if save == BNN_SAVE:  # examples/imagenet.py
        return {"epoch": 40, "arch": "resnet18", "state_dict": state, "best_acc1": torch.tensor(57.1),
                "optimizer": optimizer.state_dict()}
    # ReActNet / Bi-Real train.py: best_top1_acc is a 0-d tensor (AverageMeter of accuracy()'s tensors)
    return {"epoch": 255, "state_dict": state, "best_top1_acc": torch.tensor(69.5),
            "optimizer": optimizer.state_dict()}


def save_checkpoint(obj: dict, path: Path, container: str) -> None:
    """zip: PyTorch >= 1.6's archive (data.pkl + data/N); legacy: the pickle stream of older PyTorch."""
    torch.save(obj, str(path), _use_new_zipfile_serialization=(container == "zip"))


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(LAYOUTS))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--input-size", type=int)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--container", choices=("zip", "legacy"), default="zip")
    p.add_argument("--binary-layout", choices=("flat", "4d"))
    p.add_argument("--step", type=int, choices=(1, 2))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--final", action="store_true",
                   help="SD-BNN CIFAR: the trainers' final model.th form, {state_dict, best_prec1} (no epoch)")
    p.add_argument("--sensitivity", nargs="*", default=[], metavar="KEY[=VALUE]",
                   help="write DIR/sensitivity.json: the logits' max change when that entry changes")
    a = p.parse_args(argv)
    layout = LAYOUTS[a.name]
    a.input_size = a.input_size or layout.input_size
    a.num_classes = a.num_classes or layout.num_classes
    if a.binary_layout and a.binary_layout not in layout.layouts:
        p.error(f"{a.name} has no --binary-layout choice (its official code has one layout)")
    a.binary_layout = a.binary_layout or (layout.layouts[0] if layout.layouts else None)
    if a.step and a.step not in layout.steps:
        p.error(f"{a.name} is trained in one step: --step {a.step} does not apply")
    a.step = a.step or layout.steps[-1]
    if a.final and layout.save != CIFAR_SAVE:
        p.error(f"--final does not apply to {a.name} (only the SD-BNN CIFAR trainers write a final model.th)")
    return a


def build(a: argparse.Namespace) -> nn.Module:
    """The official network as its code initialises it (the seed fixes PyTorch's default initialisers)."""
    torch.manual_seed(a.seed)
    return LAYOUTS[a.name].build(a)


def randomise_all(model: nn.Module, a: argparse.Namespace, images: torch.Tensor) -> None:
    """Random weights, BN statistics calibrated on a random batch and perturbed, SE hidden units alive on
    ``images``."""
    g = torch.Generator().manual_seed(a.seed)
    randomise(model, g)
    calibrate_batch_norm(model, torch.randn((8, 3, a.input_size, a.input_size), generator=g), g)
    activate_se(model, images)


def reference_output(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Eval-mode logits, computed in float64 on the float32 weights (float64 returned)."""
    exact = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return exact(torch.from_numpy(images).double()).numpy()


def sensitivity(model: nn.Module, images: np.ndarray, logits: np.ndarray, specs: list) -> dict:
    """max |change of the logits| when one entry changes, per spec: ``KEY`` negates the first element of that
    state_dict tensor (a zero becomes 1), ``KEY=VALUE`` sets it to VALUE (keys without ``module.``)."""
    result = {}
    for spec in specs:
        key, _, value = spec.partition("=")
        changed = copy.deepcopy(model)
        tensor = changed.state_dict()[key].view(-1)  # shares storage with the parameter or buffer
        old = float(tensor[0])
        tensor[0] = float(value) if value else (-old if old != 0 else 1.0)
        result[spec] = float(np.abs(reference_output(changed, images) - logits).max())
    return result


def info_record(a, model: nn.Module, wrapped: nn.DataParallel, ckpt: dict) -> dict:
    layout = LAYOUTS[a.name]
    return {
        "name": a.name, "source": layout.source, "width": a.width, "input_size": a.input_size,
        "num_classes": a.num_classes, "seed": a.seed, "batch": a.batch, "step": a.step,
        "binary_layout": a.binary_layout, "container": a.container, "checkpoint_keys": sorted(ckpt),
        "save_format": layout.save, "channels": list(model.channels), "forward_dtype": "float64",
        "state_dict": [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in wrapped.state_dict().items()],
        "notes": [SIGN_NOTE, *layout.notes],
    }


def info_json(info: dict) -> str:
    """JSON with one line per state_dict entry."""
    head = json.dumps({k: v for k, v in info.items() if k != "state_dict"}, indent=1)[:-2]
    rows = ",\n  ".join(json.dumps(row) for row in info["state_dict"])
    return f'{head},\n "state_dict": [\n  {rows}\n ]\n}}\n'


def main(argv=None) -> int:
    a = parse_args(argv)
    model = build(a)
    wrapped = nn.DataParallel(model)  # on a machine without GPUs it only wraps: keys gain "module."
    save = LAYOUTS[a.name].save
    optimizer = _optimizer(model, save) if save != CIFAR_SAVE else None  # steps once, before the randomisation
    images = torch.randn((a.batch, 3, a.input_size, a.input_size),
                         generator=torch.Generator().manual_seed(a.seed + 1))
    randomise_all(model, a, images)
    images = images.numpy()
    logits = reference_output(model, images)
    a.out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_dict(wrapped, save, optimizer, a.final)
    save_checkpoint(ckpt, a.out / "checkpoint.pth.tar", a.container)
    np.save(a.out / "input.npy", images.astype(np.float32))
    np.save(a.out / "output.npy", logits.astype(np.float32))
    if a.sensitivity:
        changes = sensitivity(model, images, logits, a.sensitivity)
        (a.out / "sensitivity.json").write_text(json.dumps(changes, indent=1) + "\n")
    info = info_record(a, model, wrapped, ckpt)
    (a.out / "info.json").write_text(info_json(info))
    print(f"{a.name}: {len(info['state_dict'])} keys, logits {logits.shape}, |logits| max {abs(logits).max():.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
