"""The registry: every architecture variant by name, with its paper, source and builder.

    >>> from edgebnn import archs
    >>> model = archs.build("bireal-18", input_shape=(32, 32, 3), num_classes=10, width=0.25)

``build(name, binary_weights=False)`` gives ReActNet's and SD-BNN's step 1 (binary activations, real weights);
``NAME-real`` (or both flags False) the real-valued twin: the same network with real weights and Hardtanh in place
of every sign (so that Bi-Real's twin is not a linear network). Layer names are the same in all three, so weights
carry over by name (:func:`carry_over_weights`).

The registry itself imports no TensorFlow: each paper's module (and Larq) is imported when a variant is first
built, so listing the variants (``edgebnn models``) takes a fraction of a second.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from edgebnn.errors import EdgebnnError

_SUBMODULES = ("bireal", "common", "reactnet", "resnet", "sdbnn", "stats", "xnorpp")
_FROM_COMMON = ("Binarization", "distributional_loss")


def __getattr__(name):
    # Paper modules and the shared pieces on first use (they import TensorFlow and Larq).
    if name in _SUBMODULES:
        return importlib.import_module(f"edgebnn.archs.{name}")
    if name in _FROM_COMMON:
        return getattr(importlib.import_module("edgebnn.archs.common"), name)
    raise AttributeError(f"module 'edgebnn.archs' has no attribute {name!r}")


def _builder(module: str, function: str, **fixed):
    """``module.function`` with ``fixed`` arguments, the module imported on the first call."""

    def build(*args, **kwargs):
        return getattr(importlib.import_module(f"edgebnn.archs.{module}"), function)(*args, **fixed, **kwargs)

    build.__qualname__ = f"{module}.{function}"
    return build

__all__ = ["Variant", "names", "get", "build", "facts", "describe", "summary", "format_table", "custom_objects",
           "carry_over_weights", "weight_key", "set_training_progress", "distributional_loss", "stats", "TWIN_SUFFIX"]

TWIN_SUFFIX = "-real"
IMAGENET = ((224, 224, 3), 1000)
CIFAR10 = ((32, 32, 3), 10)

PAPERS = {
    "bireal": ("Bi-Real Net (Liu et al., ECCV 2018)", "liuzechun/Bi-Real-net; Larq Zoo BiRealNet"),
    "reactnet": ("ReActNet (Liu et al., ECCV 2020)", "liuzechun/ReActNet"),
    "xnorpp": ("XNOR-Net++ (Bulat & Tzimiropoulos, BMVC 2019)",
               "paper; blocks: Larq Zoo Real-to-Binary baseline (xnorpp-18-caseN), the author's bnn library "
               "(xnorpp-18-bnn)"),
    "sdbnn": ("SD-BNN (Xue et al., 2021)", "pingxue-hfut/SD-BNN"),
    "resnet": ("ResNet (He et al., CVPR 2016)", "torchvision / Keras applications layout"),
}


@dataclass(frozen=True)
class Variant:
    name: str
    family: str
    builder: object = field(repr=False)
    input_shape: tuple = IMAGENET[0]
    num_classes: int = IMAGENET[1]
    binary: bool = True
    twin_of: str | None = None  # set on a NAME-real twin: the binary variant it mirrors
    ours: str = ""  # what in this variant is our choice rather than the paper's
    reported: dict = field(default_factory=dict, repr=False)  # the paper's own counts (PAPERS.md), to test against

    @property
    def paper(self) -> str:
        return PAPERS[self.family][0]

    @property
    def source(self) -> str:
        return PAPERS[self.family][1]

    @property
    def twin(self) -> str | None:
        """The name of the real-valued twin of a binary variant."""
        return f"{self.name}{TWIN_SUFFIX}" if self.binary else None

    @property
    def teacher(self) -> str:
        """The real-valued teacher the papers distil from (ResNet-34 in ReActNet and SD-BNN)."""
        return "resnet-34" if self.input_shape == IMAGENET[0] else "resnet-18"


GAMMA_CASES = (1, 2, 3, 4)  # XNOR-Net++'s four Gamma cases: xnorpp.GAMMA_CASES (a test checks)
SMALL_STEM = "small-image stem (3x3 s1, no max-pool) is ours: the paper gives no small-image layout"
XNORPP_BLOCK = "block: Larq Zoo's Real-to-Binary strong baseline (the paper gives none)"
XNORPP_BNN = "block, stem and recipe of the author's bnn library, not confirmed as the paper's"

_VARIANTS = [
    Variant("bireal-18", "bireal", _builder("bireal", "bireal", depth=18), ours=SMALL_STEM,
            reported={"params": 11_699_112, "ops": 1.63e8, "size_mb": 4.03,
                      "source": "Bi-Real Net paper (OPs); Larq Zoo BiRealNet (params, size)"}),
    Variant("bireal-34", "bireal", _builder("bireal", "bireal", depth=34), ours=SMALL_STEM),
    Variant("reactnet-a", "reactnet", _builder("reactnet", "reactnet_a"), ours="small-image stem stride 1 is ours",
            reported={"ops": 0.87e8, "binary_params": 28.25e6, "source": "ReActNet paper, Table 1"}),
    Variant("reactnet-18", "reactnet", _builder("reactnet", "reactnet_resnet", depth=18), ours=SMALL_STEM,
            reported={"ops": 1.63e8, "source": "ReActNet paper"}),
    *[
        Variant(f"xnorpp-18-case{c}", "xnorpp", _builder("xnorpp", "xnorpp", depth=18, case=c),
                ours=f"{XNORPP_BLOCK}; {SMALL_STEM}")
        for c in GAMMA_CASES
    ],
    Variant("xnorpp-18-bnn", "xnorpp", _builder("xnorpp", "xnorpp_bnn", depth=18),
            ours=f"{XNORPP_BNN}; Gamma case 1 (the library's default; arch.case 2-4); {SMALL_STEM}"),
    Variant("sdbnn-resnet20", "sdbnn", _builder("sdbnn", "sdbnn_resnet20"), *CIFAR10),
    Variant("sdbnn-resnet18", "sdbnn", _builder("sdbnn", "sdbnn_resnet18"), *CIFAR10),
    Variant("sdbnn-vgg-small", "sdbnn", _builder("sdbnn", "sdbnn_vgg_small"), *CIFAR10),
    Variant("sdbnn-18", "sdbnn", _builder("sdbnn", "sdbnn_bireal", depth=18),
            ours=SMALL_STEM),  # the clipped STE on its weights is the official code's (sdbnn.py)
    Variant("resnet-18", "resnet", _builder("resnet", "resnet", depth=18), binary=False),
    Variant("resnet-34", "resnet", _builder("resnet", "resnet", depth=34), binary=False),
]
_REGISTRY = {v.name: v for v in _VARIANTS}


def names(*, twins: bool = False) -> list[str]:
    """Registered names; with ``twins`` also every binary variant's ``NAME-real``."""
    out = [v.name for v in _VARIANTS]
    if twins:
        out += [v.twin for v in _VARIANTS if v.binary]
    return out


def get(name: str) -> Variant:
    if name in _REGISTRY:
        return _REGISTRY[name]
    base = name.removesuffix(TWIN_SUFFIX)
    if name.endswith(TWIN_SUFFIX) and base in _REGISTRY and _REGISTRY[base].binary:
        v = _REGISTRY[base]
        return Variant(name, v.family, v.builder, v.input_shape, v.num_classes, binary=False, twin_of=base,
                       ours=v.ours)
    raise EdgebnnError(f"unknown model {name!r}; known models: {', '.join(names())} (and NAME{TWIN_SUFFIX} twins)")


PADDINGS = ("lce", "official", "zoo")  # common.PADDINGS, here without importing TensorFlow (a test checks they agree)


# Parameters at width 1 with the paper's input shape and classes (model.count_params(), measured once; a test checks
# them); a width w model holds about w^2 times as many, which is what the size check below estimates from.
PARAMS_AT_WIDTH_1 = {
    "bireal-18": 11_699_112, "bireal-34": 21_814_696, "reactnet-a": 29_365_480, "reactnet-18": 11_714_024,
    "xnorpp-18-case1": 11_705_000, "xnorpp-18-case2": 13_206_440, "xnorpp-18-case3": 11_721_660,
    "xnorpp-18-case4": 11_705_840, "xnorpp-18-bnn": 11_705_000, "sdbnn-resnet20": 275_578,
    "sdbnn-resnet18": 11_331_274, "sdbnn-vgg-small": 4_718_602, "sdbnn-18": 11_990_440, "resnet-18": 11_699_112,
    "resnet-34": 21_814_696,
}
MAX_MODEL_BYTES = 2**31  # float32 weights, or one image's first feature map, above 2 GiB: refused before building
STEM_CHANNELS = 128  # the widest full-resolution map of any variant at width 1 (sdbnn-vgg-small's first conv)


def check_size(name: str, input_shape, num_classes: int, width: float) -> None:
    """Refuse, before any layer is made, a model whose float32 weights (estimated: the width-1 count x width^2,
    scaled up for more classes than the paper's) or whose first feature map for one image (input h x w x 128 x
    width channels) would be over ``MAX_MODEL_BYTES``."""
    v = get(name)
    base = PARAMS_AT_WIDTH_1.get(v.twin_of or v.name, max(PARAMS_AT_WIDTH_1.values()))
    weights = 4 * base * width**2 * max(1.0, num_classes / v.num_classes)
    h, w = (int(d) if d else 224 for d in input_shape[:2])
    activations = 4 * h * w * (int(input_shape[2] or 3) + STEM_CHANNELS * width)
    for what, size, fix in (("weights", weights, "a smaller width or fewer classes"),
                            ("first feature map", activations, "a smaller input size or width")):
        if size > MAX_MODEL_BYTES:
            raise EdgebnnError(f"{name} at width {width:g}, input {h}x{w}, {num_classes} classes: its {what} would "
                               f"take about {size / 2**30:,.0f} GiB, over edgebnn's limit of "
                               f"{MAX_MODEL_BYTES // 2**30} GiB; use {fix}")


def build(name: str, input_shape=None, num_classes: int | None = None, width: float = 1.0, *,
          binary_weights: bool = True, binary_activations: bool = True, padding: str = "lce", **kwargs):
    """Build variant ``name`` (defaults: the paper's input shape and classes, width 1). ``padding``: "lce" (ours:
    binary convs one-padded, TensorFlow's placement) or "official" (the papers' code: zero padding, PyTorch's
    symmetric stride-2 placement) or "zoo" (Larq Zoo's: zero padding, TensorFlow's placement), see
    :mod:`edgebnn.archs.common`."""
    v = get(name)
    input_shape = tuple(input_shape or v.input_shape)
    num_classes = int(num_classes or v.num_classes)
    if width <= 0:
        raise EdgebnnError(f"width must be positive, not {width}")
    if padding not in PADDINGS:
        raise EdgebnnError(f"unknown padding convention {padding!r}; choose one of {', '.join(PADDINGS)}")
    check_size(name, input_shape, num_classes, width)
    from edgebnn.archs.common import Binarization, padding_convention  # lazy: loads TensorFlow and Larq

    if v.family != "resnet":
        kwargs["mode"] = Binarization(binary_weights and v.binary, binary_activations and v.binary)
    with padding_convention(padding):
        model = v.builder(input_shape, num_classes, width=width, **kwargs)
    model._name = name.replace("-", "_")
    return model


def facts(name: str, input_shape=None, num_classes: int | None = None, width: float = 1.0) -> dict:
    """One variant's registry facts, without building it (no TensorFlow): what ``edgebnn models`` lists."""
    v = get(name)
    return {
        "name": v.name,
        "family": v.family,
        "paper": v.paper,
        "source": v.source,
        "input_shape": list(input_shape or v.input_shape),
        "num_classes": int(num_classes or v.num_classes),
        "width": width,
        "binary": v.binary,
        "twin": v.twin,
        "ours": v.ours,
        "reported": dict(v.reported),
    }


def describe(name: str, input_shape=None, num_classes: int | None = None, width: float = 1.0) -> dict:
    """One variant as a record: its registry facts and the counts of the built model (``stats.model_stats``)."""
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    model = build(name, input_shape, num_classes, width)
    return {**facts(name, model.input_shape[1:], model.output_shape[-1], width),
            "binary_convs": len(stats.binary_conv_layers(model)), **stats.model_stats(model)}


def summary(name: str, input_shape=None, num_classes: int | None = None, width: float = 1.0) -> str:
    """Larq's layer-by-layer summary of one variant, followed by the papers' OPs."""
    import larq as lq  # lazy: Larq loads TensorFlow

    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    model = build(name, input_shape, num_classes, width)
    lines: list[str] = []
    lq.models.summary(model, print_fn=lines.append)
    s = stats.model_stats(model)
    lines.append(f"binary convs: {len(stats.binary_conv_layers(model))}   binary MACs: {s['binary_macs']:.3e}   "
              f"float MACs: {s['float_macs']:.3e}   OPs (binary/64 + float): {s['ops']:.3e}   "
              f"size (1-bit packed): {s['size_mb']:.2f} MiB")
    return "\n".join(lines)


def format_table(records: list[dict]) -> str:
    """The ``edgebnn models`` table: the counts' columns when the records have them (:func:`describe`), else
    the registry's facts (:func:`facts`)."""
    counted = bool(records) and "params" in records[0]
    header = f"{'name':<22}{'family':<10}{'input':<13}" + (
        f"{'params':>12}{'binary':>12}{'OPs':>11}{'MiB':>8}" if counted else f"{'classes':>8}  {'kind':<8}")
    lines = [header + "  paper", "-" * (len(header) + 7)]
    for r in records:
        shape = "x".join(str(d) for d in r["input_shape"])
        cells = (f"{r['params']:>12,}{r['binary_params']:>12,}{r['ops']:>11.3e}{r['size_mb']:>8.2f}" if counted
                 else f"{r['num_classes']:>8}  {'binary' if r['binary'] else 'real':<8}")
        lines.append(f"{r['name']:<22}{r['family']:<10}{shape:<13}{cells}  {r['paper']}")
    return "\n".join(lines)


def custom_objects() -> dict:
    """Every custom layer and quantizer edgebnn's models use, for ``tf.keras.models.load_model``."""
    import larq as lq  # lazy: Larq loads TensorFlow

    from edgebnn.archs import common, reactnet, sdbnn, xnorpp  # lazy: the architectures load TensorFlow and Larq

    classes = [common.MagnitudeAwareWeights, common.HardTanh, common.PlacedQuantConv2D, common.ConstantPadding2D,
               sdbnn.PlacedSelfDistributedConv2D, reactnet.RSign, reactnet.RPReLU, xnorpp.LearnedScale,
               sdbnn.EDESign, sdbnn.WeightSelfDistribution, sdbnn.SelfDistributedConv2D,
               sdbnn.ActivationSelfDistribution, sdbnn.OptionAShortcut]
    objects = {c.__name__: c for c in classes}
    objects.update({name: obj for name, obj in vars(lq.layers).items() if isinstance(obj, type)})
    objects.update({name: obj for name, obj in vars(lq.quantizers).items() if isinstance(obj, type)})
    return objects


def weight_key(layer, weight) -> str:
    """A weight's name within its layer: ``stage1_conv1_asd/squeeze/kernel:0`` -> ``squeeze/kernel``. (A model
    loaded from a file may name a custom layer's weights without the layer prefix: ``squeeze/kernel:0``.)"""
    name = weight.name.split(":")[0]
    prefix = f"{layer.name}/"
    at = name.find(prefix)
    return name[at + len(prefix):] if at >= 0 else name


def _weights_by_key(layer) -> dict:
    out = {}
    for w in layer.weights:
        key = weight_key(layer, w)
        if key in out:
            raise EdgebnnError(f"layer {layer.name} has two weights named {key!r}; weights must be unique by "
                               f"name within a layer for the handover to copy them")
        out[key] = w
    return out


def carry_over_weights(source, target, *, skip=()) -> list[str]:
    """Copy every weight of ``source`` into the same-named layer and weight of ``target``; return the names
    copied. Used for the two-step handover (step 2 starts from step 1's kernels, BN and the rest) and for
    fine-tuning (``skip``: layers left as they are, a new classifier). Weights are matched by their name within
    the layer (unique, checked); a same-named weight of another shape is an :class:`EdgebnnError` (the two models
    are not the same architecture), never skipped."""
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    copied = []
    for layer in stats.iter_layers(target):
        if layer.name in skip:
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            continue
        src_weights = _weights_by_key(src)
        for key, w in _weights_by_key(layer).items():
            if key not in src_weights:
                continue
            value = src_weights[key]
            value = value.latent_variable if hasattr(value, "latent_variable") else value
            if tuple(value.shape) != tuple(w.shape):
                raise EdgebnnError(f"cannot carry weight {layer.name}/{key} over: shape {tuple(value.shape)} in "
                                   f"the source model, {tuple(w.shape)} in the target (a different input size, "
                                   f"width or number of classes?)")
            w.assign(value.numpy())
            copied.append(w.name)
    return copied


def set_training_progress(model, fraction: float, *, ede_t_min: float | None = None) -> None:
    """Tell the model how much of training is done (0..1): anneals SD-BNN's EDE backward from ``ede_t_min`` (the
    recipe's; default 1e-3) to 10; others ignore it."""
    from edgebnn.archs import sdbnn  # lazy: the architectures load TensorFlow and Larq

    sdbnn.set_ede_progress(fraction, t_min=sdbnn.EDE_T_MIN if ede_t_min is None else ede_t_min)
