"""The registry: every architecture variant by name, with its paper, source and builder.

    >>> from edgebnn import archs
    >>> model = archs.build("bireal-18", input_shape=(32, 32, 3), num_classes=10, width=0.25)

``build(name, binary_weights=False)`` gives ReActNet's and SD-BNN's step 1 (binary activations, real weights);
``NAME-real`` (or both flags False) the real-valued twin: the same network with real weights and Hardtanh in place
of every sign (so that Bi-Real's twin is not a linear network). Layer names are the same in all three, so weights
carry over by name (:func:`carry_over_weights`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from edgebnn.archs import bireal, common, reactnet, resnet, sdbnn, stats, xnorpp
from edgebnn.archs.common import Binarization, distributional_loss
from edgebnn.errors import EdgebnnError

__all__ = ["Variant", "names", "get", "build", "describe", "summary", "format_table", "custom_objects",
           "carry_over_weights", "set_training_progress", "distributional_loss", "stats", "TWIN_SUFFIX"]

TWIN_SUFFIX = "-real"
IMAGENET = ((224, 224, 3), 1000)
CIFAR10 = ((32, 32, 3), 10)

PAPERS = {
    "bireal": ("Bi-Real Net (Liu et al., ECCV 2018)", "liuzechun/Bi-Real-net; Larq Zoo BiRealNet"),
    "reactnet": ("ReActNet (Liu et al., ECCV 2020)", "liuzechun/ReActNet"),
    "xnorpp": ("XNOR-Net++ (Bulat & Tzimiropoulos, BMVC 2019)",
               "paper; block from the author's bnn library / Larq Zoo Real-to-Binary (ours)"),
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


SMALL_STEM = "small-image stem (3x3 s1, no max-pool) is ours: the paper gives no small-image layout"
XNORPP_BLOCK = "block structure from the author's bnn library practice, not confirmed as the paper's"

_VARIANTS = [
    Variant("bireal-18", "bireal", functools.partial(bireal.bireal, depth=18), ours=SMALL_STEM,
            reported={"params": 11_699_112, "ops": 1.63e8, "size_mb": 4.03,
                      "source": "Bi-Real Net paper (OPs); Larq Zoo BiRealNet (params, size)"}),
    Variant("bireal-34", "bireal", functools.partial(bireal.bireal, depth=34), ours=SMALL_STEM),
    Variant("reactnet-a", "reactnet", reactnet.reactnet_a, ours="small-image stem stride 1 is ours",
            reported={"ops": 0.87e8, "binary_params": 28.25e6, "source": "ReActNet paper, Table 1"}),
    Variant("reactnet-18", "reactnet", functools.partial(reactnet.reactnet_resnet, depth=18), ours=SMALL_STEM,
            reported={"ops": 1.63e8, "source": "ReActNet paper"}),
    *[
        Variant(f"xnorpp-18-case{c}", "xnorpp", functools.partial(xnorpp.xnorpp, depth=18, case=c),
                ours=f"{XNORPP_BLOCK}; {SMALL_STEM}")
        for c in xnorpp.GAMMA_CASES
    ],
    Variant("sdbnn-resnet20", "sdbnn", sdbnn.sdbnn_resnet20, *CIFAR10),
    Variant("sdbnn-resnet18", "sdbnn", sdbnn.sdbnn_resnet18, *CIFAR10),
    Variant("sdbnn-vgg-small", "sdbnn", sdbnn.sdbnn_vgg_small, *CIFAR10),
    Variant("sdbnn-18", "sdbnn", functools.partial(sdbnn.sdbnn_bireal, depth=18),
            ours="weights' backward (clipped STE) is ours; " + SMALL_STEM),
    Variant("resnet-18", "resnet", functools.partial(resnet.resnet, depth=18), binary=False),
    Variant("resnet-34", "resnet", functools.partial(resnet.resnet, depth=34), binary=False),
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


def build(name: str, input_shape=None, num_classes: int | None = None, width: float = 1.0, *,
          binary_weights: bool = True, binary_activations: bool = True, **kwargs):
    """Build variant ``name`` (defaults: the paper's input shape and classes, width 1)."""
    v = get(name)
    input_shape = tuple(input_shape or v.input_shape)
    num_classes = int(num_classes or v.num_classes)
    if width <= 0:
        raise EdgebnnError(f"width must be positive, not {width}")
    if v.family != "resnet":
        kwargs["mode"] = Binarization(binary_weights and v.binary, binary_activations and v.binary)
    model = v.builder(input_shape, num_classes, width=width, **kwargs)
    model._name = name.replace("-", "_")
    return model


def describe(name: str, input_shape=None, num_classes: int | None = None, width: float = 1.0) -> dict:
    """One variant as a record: its registry facts and the counts of the built model (``stats.model_stats``)."""
    v = get(name)
    model = build(name, input_shape, num_classes, width)
    return {
        "name": v.name,
        "family": v.family,
        "paper": v.paper,
        "source": v.source,
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "width": width,
        "binary": v.binary,
        "binary_convs": len(stats.binary_conv_layers(model)),
        **stats.model_stats(model),
        "twin": v.twin,
        "ours": v.ours,
        "reported": dict(v.reported),
    }


def summary(name: str, input_shape=None, num_classes: int | None = None, width: float = 1.0) -> str:
    """Larq's layer-by-layer summary of one variant, followed by the papers' OPs."""
    import larq as lq

    model = build(name, input_shape, num_classes, width)
    lines: list[str] = []
    lq.models.summary(model, print_fn=lines.append)
    s = stats.model_stats(model)
    lines.append(f"binary convs: {len(stats.binary_conv_layers(model))}   binary MACs: {s['binary_macs']:.3e}   "
              f"float MACs: {s['float_macs']:.3e}   OPs (binary/64 + float): {s['ops']:.3e}   "
              f"size (1-bit packed): {s['size_mb']:.2f} MiB")
    return "\n".join(lines)


def format_table(records: list[dict]) -> str:
    """The ``edgebnn models`` table."""
    header = f"{'name':<22}{'family':<10}{'input':<13}{'params':>12}{'binary':>12}{'OPs':>11}{'MiB':>8}  paper"
    lines = [header, "-" * len(header)]
    for r in records:
        shape = "x".join(str(d) for d in r["input_shape"])
        lines.append(f"{r['name']:<22}{r['family']:<10}{shape:<13}{r['params']:>12,}{r['binary_params']:>12,}"
                     f"{r['ops']:>11.3e}{r['size_mb']:>8.2f}  {r['paper']}")
    return "\n".join(lines)


def custom_objects() -> dict:
    """Every custom layer and quantizer edgebnn's models use, for ``tf.keras.models.load_model``."""
    import larq as lq

    classes = [common.MagnitudeAwareWeights, common.HardTanh, reactnet.RSign, reactnet.RPReLU, xnorpp.LearnedScale,
               sdbnn.EDESign, sdbnn.WeightSelfDistribution, sdbnn.SelfDistributedConv2D,
               sdbnn.ActivationSelfDistribution, sdbnn.OptionAShortcut]
    objects = {c.__name__: c for c in classes}
    objects.update({name: obj for name, obj in vars(lq.layers).items() if isinstance(obj, type)})
    objects.update({name: obj for name, obj in vars(lq.quantizers).items() if isinstance(obj, type)})
    return objects


def carry_over_weights(source, target) -> list[str]:
    """Copy every weight of ``source`` into the same-named layer and weight of ``target`` (same shape); return
    the names copied. Used for the two-step handover: step 2 starts from step 1's kernels, BN and the rest."""
    copied = []
    for layer in stats.iter_layers(target):
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            continue
        src_weights = {w.name.split("/")[-1]: w for w in src.weights}
        for w in layer.weights:
            key = w.name.split("/")[-1]
            if key in src_weights and tuple(src_weights[key].shape) == tuple(w.shape):
                w.assign(src_weights[key].numpy() if not hasattr(src_weights[key], "latent_variable")
                         else src_weights[key].latent_variable.numpy())
                copied.append(w.name)
    return copied


def set_training_progress(model, fraction: float) -> None:
    """Tell the model how much of training is done (0..1): anneals SD-BNN's EDE backward; others ignore it."""
    sdbnn.set_ede_progress(fraction)
