"""``edgebnn import``: a published checkpoint into a run folder that ``eval``, ``convert``, ``verify``, ``profile`` and
``report`` take like a trained one.

The family comes from the checkpoint's keys (or ``model``); width, classes and (VGG-Small) input size from its
shapes (fc rows = classes, fc columns = the last stage's channels x width); the step from its binary kernels'
layout. The model is ``archs.build(NAME, ..., padding="official")``: the official code's zero padding and
PyTorch's stride-2 placement, so that it computes the checkpoint's own function (Larq Zoo's weights keep Zoo's:
zero padding, TensorFlow's placement). Every tensor is used once and every weight set once (:class:`Mapper`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgebnn import archs, data
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.importing import bireal, reactnet, run_folder, sdbnn, sources, xnorpp, zoo
from edgebnn.importing.tensors import Mapper
from edgebnn.machine import host_label
from edgebnn.version import __version__

KEY_MAPS = {"reactnet-a": reactnet, "reactnet-18": reactnet, "bireal-18": bireal, "bireal-34": bireal,
            "sdbnn-18": sdbnn, "sdbnn-resnet20": sdbnn, "sdbnn-resnet18": sdbnn, "sdbnn-vgg-small": sdbnn,
            "xnorpp-18-bnn": xnorpp}
DETECTORS = (reactnet, sdbnn, xnorpp, bireal)
TWO_STEPS = ("reactnet-a", "reactnet-18", "xnorpp-18-bnn")  # step 1: binary activations, real weights
ZOO_PADDING = "zoo"  # zero padding, TensorFlow placement: Larq Zoo's BiRealNet (see edgebnn.importing.zoo)
SMALL_IMAGE = 64  # edgebnn gives inputs of 64 px or less its own small-image stem
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass(frozen=True)
class Plan:
    """What the checkpoint becomes: the registry model, its size, its step and padding convention."""

    name: str
    width: float
    num_classes: int
    input_size: int
    step: int
    step_why: str
    padding: str


def detect(source: sources.Source, log) -> str:
    """The registry model whose official key layout the checkpoint follows."""
    if source.is_zoo:
        found = [zoo.detect(source.state)]
    else:
        found = [name for mod in DETECTORS if (name := mod.detect(source.state))]
    found = [f for f in found if f]
    if not found:
        keys = ", ".join(list(source.state)[:4])
        raise OptionError("{file}: keys of no known official layout ({keys}...); pass {model:=NAME} ({names})",
                          file=source.path.name, keys=keys, names=", ".join(KEY_MAPS))
    if len(found) > 1:
        log(f"the keys fit {' and '.join(found)}: importing as {found[0]} (pass --model to choose)")
    if found[0] not in KEY_MAPS:
        raise EdgebnnError(f"{source.path.name} is a {found[0]} checkpoint, which edgebnn has no model for; "
                           f"importable: {', '.join(KEY_MAPS)}")
    return found[0]


def plan(source: sources.Source, name: str, *, width=None, num_classes=None, input_size=None, step=None) -> Plan:
    """Size and step from the checkpoint's shapes, each overridable by the caller."""

    if name not in KEY_MAPS:
        raise EdgebnnError(f"cannot import into {name!r}: importable models are {', '.join(KEY_MAPS)}")
    if source.is_zoo and name != "bireal-18":
        raise EdgebnnError(f"{source.path.name} holds Larq Zoo Keras weights, which import into bireal-18 only")
    key_map = zoo if source.is_zoo else KEY_MAPS[name]
    facts = key_map.facts(source.state, name)
    variant = archs.get(name)
    size = int(input_size or facts.get("input_size") or variant.input_shape[0])
    imagenet_layout = variant.input_shape[0] > SMALL_IMAGE
    if imagenet_layout and size <= SMALL_IMAGE:
        raise OptionError("{input_size} {size}: {name}'s official stem needs inputs over {small} px (edgebnn gives "
                          "smaller inputs its own small-image stem, which no checkpoint has)", size=size, name=name,
                          small=SMALL_IMAGE)
    if name == "sdbnn-resnet18" and size != 32:
        raise OptionError("{input_size} {size}: the official CIFAR ResNet-18 pools 4x4 windows at its head, the "
                          "whole map only at 32 px; import it at 32", size=size)
    if step not in (None, 1, 2):
        raise OptionError("{step} must be 1 or 2, not {value}", value=step)
    if name in TWO_STEPS and not source.is_zoo:
        found, why = key_map.step_of(source.state, name)
        why = why if step in (None, found) else f"--step {step} (the layout suggested step {found})"
        step = step or found
    elif step == 1:
        raise EdgebnnError(f"{name} has no step-1 import (its published checkpoints have binary weights)")
    else:
        step, why = 2, "binary weights"
    width = float(width if width is not None else facts.get("width") or 1.0)
    if width <= 0:
        raise OptionError("{width} must be positive, not {value:g}", value=width)
    classes = int(num_classes or facts.get("num_classes") or variant.num_classes)
    return Plan(name, width, classes, size, step, why, ZOO_PADDING if source.is_zoo else "official")


def build_and_fill(source: sources.Source, p: Plan):
    """(model with the checkpoint's weights, tensors used)."""

    try:
        model = archs.build(p.name, (p.input_size, p.input_size, 3), p.num_classes, p.width,
                            binary_weights=p.step == 2, padding=p.padding)
    except (ValueError, TypeError) as err:  # a width or size the builder cannot take
        raise EdgebnnError(f"cannot build {p.name} at width {p.width:g}, input {p.input_size}: "
                           f"{str(err).splitlines()[0][:160]}") from None
    m = Mapper(source.state, model)
    (zoo if source.is_zoo else KEY_MAPS[p.name]).fill(m, p.name, model)
    used = m.apply(f"{source.path.name} does not fit {p.name} (width {p.width:g}, {p.num_classes} classes, "
                   f"step {p.step})")
    return model, used


def run_info(source: sources.Source, p: Plan, model, used: int) -> dict:
    """``run.json`` of an imported model: the fields ``edgebnn train`` writes, plus where the weights came from."""

    variant = archs.get(p.name)
    imagenet = variant.input_shape[0] > SMALL_IMAGE
    dataset = ("tfds:imagenet2012" if imagenet and p.num_classes == 1000
               else "cifar10" if not imagenet and p.num_classes == 10 else None)
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    saved = {"file": "model.keras", "epoch": None, "val_top1": None}
    return {
        "name": None, "model": p.name, "recipe": None, "real": False, "dataset": dataset,
        "input_shape": [p.input_size, p.input_size, 3], "num_classes": p.num_classes,
        "class_names": CIFAR_CLASSES if dataset == "cifar10" else None,
        # The official trainers' transforms.Normalize (ImageNet's statistics, SD-BNN's CIFAR trainers included).
        "mean": list(data.IMAGENET_MEAN), "std": list(data.IMAGENET_STD), "augment": None, "seed": None,
        "status": "imported", "epochs_done": 0, "total_epochs": 0, "best_val_top1": None, "final_val_top1": None,
        "paper": variant.paper, "ours": "", "arch": {"width": p.width}, "width": p.width, "padding": p.padding,
        "step": p.step, "binary_weights": p.step == 2,
        "source": {"file": source.path.name, "sha256": source.sha256, "format": source.format, "step": p.step,
                   "step_why": p.step_why, "data_parallel_prefix": source.prefixed, "tensors": used,
                   "checkpoint_top1": source.reported_top1(),
                   "meta": _plain_meta(source.meta)},
        "params": int(model.count_params()), "checkpoints": {"best": saved, "last": dict(saved)},
        "edgebnn_version": __version__, "machine": host_label(), "started": now, "finished": now,
    }


META_TEXT_LIMIT = 200  # characters of a string the checkpoint stores beside its tensors (its arch, say)


def _plain_meta(meta: dict) -> dict:
    """The checkpoint's scalars that JSON keeps as they are: bools, 64-bit integers, finite floats, strings (cut
    to META_TEXT_LIMIT characters); a 10**400 or a NaN is left out."""
    out = {}
    for key, value in meta.items():
        if isinstance(value, bool) or (isinstance(value, int) and -2**63 <= value < 2**63):
            out[key] = value
        elif isinstance(value, float) and sources.finite(value) is not None:
            out[key] = value
        elif isinstance(value, str):
            out[key] = value[:META_TEXT_LIMIT]
    return out


def import_checkpoint(path, *, model: str | None = None, out=None, width: float | None = None,
                      num_classes: int | None = None, input_size: int | None = None, step: int | None = None,
                      log=None) -> Path:
    """Import the checkpoint at ``path`` into a new run folder (``out``, default ``runs/NAME-TIMESTAMP``) and return
    it. ``log(line)`` hears what was mapped."""
    log = log or (lambda line: None)
    if out is not None:
        run_folder.destination("", out)  # a read-only or taken --out: refused before anything is read or built
    source = sources.read(path)
    name = model or detect(source, log)
    p = plan(source, name, width=width, num_classes=num_classes, input_size=input_size, step=step)
    dest = run_folder.destination(p.name, out)
    keras_model, used = build_and_fill(source, p)
    info = run_info(source, p, keras_model, used)
    run_folder.write(keras_model, info, dest)
    _report(log, source, p, info)
    return dest


def _report(log, source: sources.Source, p: Plan, info: dict) -> None:
    prefix = ", module. prefix stripped" if source.prefixed else ""
    log(f"{source.path.name} ({source.format}{prefix}, sha256 {source.sha256[:16]}...) -> {p.name}, "
        f"step {p.step} ({p.step_why})")
    log(f"  width {p.width:g}, {p.num_classes} classes, input {p.input_size}x{p.input_size}x3, padding {p.padding}")
    log(f"  {info['source']['tensors']} tensors -> {info['params']:,} parameters: every tensor used once, every "
        f"weight set once")
    top1 = info["source"]["checkpoint_top1"]
    log(f"  the checkpoint's own {top1['key']}: {top1['value']:g} ({top1['note']})" if top1
        else "  the checkpoint reports no accuracy")

