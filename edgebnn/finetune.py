"""Fine-tuning from pretrained weights: ``edgebnn train NAME --weights RUN|MODEL``.

The source is a run folder (trained here or written by ``edgebnn import``) or a saved ``.keras`` model (loaded by
:func:`edgebnn.runs.load_model`, which runs no code from it). The new run
builds the same architecture with the source's padding convention, width and binarization, copies every weight
by layer name, and gives the model a new classifier when the class count differs (the head's Dense keeps its
glorot initialisation). Everything else must match: a weight of another shape is an error naming it.

The recipe step is ours, not the papers' (they train from scratch or from their own step 1), and says so in the
run's ``ours``: one step, the source's binarization, Adam, learning rate a fifth of the recipe's last step's,
cosine to 0, no weight decay, cross-entropy with label smoothing 0.1 (a teacher would need training on the new
classes first), the recipe's batch size and last step's epochs unless ``--epochs`` says otherwise. Small steps
keep the latent weights near their signs: a large one flips many of them at once and forgets what was learned.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edgebnn import archs, runs
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.inputs import read_regular, sha256

LR_FRACTION = 0.2
LABEL_SMOOTHING = 0.1
OURS = ("fine-tuning step (ours): Adam, lr x0.2 of the recipe's last step, cosine to 0, no weight decay, "
        "cross-entropy with label smoothing 0.1, from pretrained weights")


@dataclass
class Pretrained:
    """The weights a fine-tuning run starts from."""
    path: str
    model: object  # the Keras model
    model_name: str | None  # its registry name, when a run folder says
    padding: str
    width: float | None
    binary_weights: bool
    binary_activations: bool
    num_classes: int
    sha256: str
    source: dict  # the source run's own provenance (an imported checkpoint's file, sha256 and accuracy)


def load_pretrained(weights: str | os.PathLike) -> Pretrained:
    """The model and facts of a run folder (its best checkpoint) or a saved model file."""
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq
    from edgebnn.archs.common import padding_of  # lazy: the architectures load TensorFlow and Larq

    model, info = runs.load_model(weights)
    recipe_arch = {}
    if info.get("run_dir"):
        try:
            text = read_regular(Path(weights) / runs.RECIPE, "recipe", hint="the run folder is damaged",
                                limit=runs.INFO_LIMIT).decode("utf-8")
            recipe_arch = tomllib.loads(text).get("arch", {})
        except (OSError, ValueError, EdgebnnError):
            recipe_arch = {}
        recipe_arch = recipe_arch if isinstance(recipe_arch, dict) else {}
    convs = [layer for layer in stats.iter_layers(model) if hasattr(layer, "kernel_quantizer")]
    return Pretrained(
        path=str(weights), model=model, model_name=info.get("model"),
        padding=info.get("padding") or padding_of(model),
        width=recipe_arch.get("width") or info.get("width"),  # an imported run records it in run.json
        binary_weights=any(getattr(c, "kernel_quantizer", None) is not None for c in convs),
        binary_activations=any(stats.signs_its_input(c) for c in convs),
        num_classes=int(model.output_shape[-1]),
        sha256=sha256(runs.model_file(weights)),
        source=info.get("source") if isinstance(info.get("source"), dict) else {},
    )


# The fine-tuning step's own choices: a --set of one of these would be dropped, so it is refused.
STEP_OWN = ("name", "binary_weights", "binary_activations", "optimizer", "lr", "schedule", "milestones",
            "weight_decay", "label_smoothing", "loss", "teacher", "init_from_previous")


def _refuse_what_is_not_honoured(recipe: dict, pretrained: Pretrained, sets) -> None:
    """Explicit choices fine-tuning cannot follow, refused before anything is built: a width or padding other than
    the weights', a real-valued twin of binary weights, a step key the fine-tuning step sets itself, or a key of a
    step other than the last (the one fine-tuning keeps)."""
    binary = pretrained.binary_weights or pretrained.binary_activations
    if recipe.get("real") and binary:
        raise OptionError("{weights} {path} holds binary weights; fine-tuning keeps their binarization, so a "
                          "real-valued twin ({real}, real = true or a -real name) cannot start from them: drop it, "
                          "or give the weights of a twin run", path=pretrained.path)
    last = len(recipe["steps"]) - 1
    for assignment in sets:
        key, _, text = str(assignment).partition("=")
        parts = key.strip().split(".")
        if parts[:2] == ["arch", "width"]:
            theirs = float(pretrained.width if pretrained.width is not None
                           else _width_of(pretrained.model, recipe["model"]))
            if not abs(float(recipe["arch"].get("width") or 1.0) - theirs) <= 1e-9 * max(theirs, 1.0):
                raise OptionError("{sets} {key}: the weights {path} are width {theirs:g}, and fine-tuning keeps "
                                  "their width; drop it (or train from scratch)", key=assignment, path=pretrained.path,
                                  theirs=theirs)
        elif parts[:2] == ["arch", "padding"] and recipe["arch"].get("padding") != pretrained.padding:
            raise OptionError("{sets} {key}: the weights {path} use the {theirs} padding convention, and fine-tuning "
                              "keeps it; drop it", key=assignment, path=pretrained.path, theirs=pretrained.padding)
        elif parts[0] == "steps" and (parts[-1] in STEP_OWN or (len(parts) == 3 and parts[1] != str(last))):
            raise OptionError("{sets} {key}: fine-tuning trains one step of its own (Adam, lr x{fraction:g} of the "
                              "last step's, cosine, no weight decay, label smoothing {smoothing:g}) from the recipe's "
                              "last step ({last}), so this would be ignored; drop it (epochs and batch_size are kept)",
                              key=assignment, fraction=LR_FRACTION, smoothing=LABEL_SMOOTHING, last=last)


def finetune_recipe(recipe: dict, pretrained: Pretrained, *, epochs: int | None = None, sets=()) -> dict:
    """``recipe`` turned into one fine-tuning step from ``pretrained`` (see the module docstring); ``sets``, the
    ``--set`` overrides the user gave, are checked to be honoured."""
    if pretrained.model_name and pretrained.model_name.removesuffix("-real") != recipe["model"]:
        raise OptionError("{weights} {path} holds a {theirs} model, not {ours}: give the same model name, or weights "
                          "of {ours}", path=pretrained.path, theirs=pretrained.model_name, ours=recipe["model"])
    _refuse_what_is_not_honoured(recipe, pretrained, sets)
    out = copy.deepcopy(recipe)
    last = out["steps"][-1]
    step = {**last, "name": "finetune", "binary_weights": pretrained.binary_weights,
            "binary_activations": pretrained.binary_activations, "epochs": int(epochs or last["epochs"]),
            "optimizer": "adam", "lr": last["lr"] * LR_FRACTION, "schedule": "cosine", "milestones": [],
            "weight_decay": 0.0, "label_smoothing": LABEL_SMOOTHING, "loss": "crossentropy", "teacher": "",
            "init_from_previous": False}
    out["steps"] = [step]
    out["real"] = not (pretrained.binary_weights or pretrained.binary_activations)
    out["arch"] = {**out["arch"], "padding": pretrained.padding}
    out["arch"]["width"] = pretrained.width if pretrained.width is not None else _width_of(pretrained.model,
                                                                                          recipe["model"])
    if archs.get(recipe["model"]).input_shape == archs.IMAGENET[0]:
        # keep the pretrained stem whatever the new input size: an ImageNet stem on small images too
        out["arch"]["small"] = archs.common.is_small_image(pretrained.model.input_shape[1:])
    out["ours"] = "; ".join(x for x in (out.get("ours"), OURS) if x)
    return out


def _first_conv_filters(model) -> int:
    import tensorflow as tf  # lazy: loads TensorFlow

    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    return next(int(layer.filters) for layer in stats.iter_layers(model) if isinstance(layer, tf.keras.layers.Conv2D))


def _width_of(model, name: str) -> float:
    """The width multiplier of a bare saved model: its first conv's channels over the family's at width 1
    (``channels(c, f / c)`` gives back f for any multiple of 8, so every later stage matches too)."""
    full = archs.build(name, input_shape=(32, 32, 3), num_classes=10)
    return _first_conv_filters(model) / _first_conv_filters(full)


def provenance(pretrained: Pretrained) -> dict:
    """What ``run.json`` records of the starting weights."""
    return {"path": str(Path(pretrained.path).resolve()), "sha256": pretrained.sha256,
            "model": pretrained.model_name, "padding": pretrained.padding, "num_classes": pretrained.num_classes,
            "source": pretrained.source or None}


def load_weights_into(model, pretrained: Pretrained) -> tuple[list[str], str | None]:
    """Copy ``pretrained``'s weights into ``model`` by layer name; the classifier (the Dense that gives the output)
    is left new when its class count differs. Returns (weights copied, the renewed classifier's name or None);
    an error when any other weight of ``model`` found nothing to copy (another architecture)."""

    head = model.layers[-1]
    new_head = None
    if pretrained.num_classes != int(model.output_shape[-1]):
        new_head = head.name
    copied = archs.carry_over_weights(pretrained.model, model, skip=(new_head,) if new_head else ())
    expected = [w.name for layer in model.layers if layer.name != new_head for w in layer.weights]
    missing = sorted(set(expected) - set(copied))
    if missing:
        raise OptionError("{weights} {path} has nothing for {n} weights of {model} (first: {first}): not the same "
                          "architecture, width or binarization", path=pretrained.path, n=len(missing),
                          model=model.name, first=", ".join(missing[:3]))
    return copied, new_head
