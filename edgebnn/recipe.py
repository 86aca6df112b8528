"""Training recipes: ``models/<name>.toml`` (shipped as package data) or any recipe file.

A recipe names a registered architecture and says how the paper trains it::

    model = "reactnet-18"            # registry name (edgebnn.archs)
    dataset = "tfds:imagenet2012"    # default data set (edgebnn.data names)
    input_size = 224
    augment = "imagenet"             # none | cifar | imagenet
    flip = true                      # horizontal flips when augmenting
    real = false                     # true: train the real-valued twin (same layers, float weights/activations)
    sync_batchnorm = false           # synchronised BatchNorm across replicas (--strategy)
    ours = ""                        # non-empty: a recipe of our own, not the paper's (says why)
    ede_t_min = 1e-3                 # SD-BNN CIFAR: EDE's start temperature, annealed to 10 (VGG-Small: 0.1)
    [arch]                           # extra arguments of edgebnn.archs.build (width, input_shape, padding, ...)
                                     # padding: "lce" (default, ours) | "official" (the papers' code's) | "zoo"
    [paper]                          # reported figures: top1, top5, dataset, source, note
    [[steps]]                        # one or more training steps, run in order
    name = "step1"
    binary_weights = false
    binary_activations = true
    epochs = 128
    batch_size = 512
    optimizer = "adam"               # adam | sgd | adamw (adamw: decoupled weight decay)
    lr = 2.5e-3
    schedule = "linear"              # linear (to 0) | cosine (to 0) | constant | multistep
    milestones = [40, 70, 80]        # multistep: lr x 0.1 after each of these epochs (of this step)
    momentum = 0.9                   # sgd only
    weight_decay = 1e-5
    weight_decay_on = "conv_kernels" # conv_kernels (rank 4) | kernels (conv + FC) | all | none
    label_smoothing = 0.0
    loss = "distributional"          # crossentropy | distributional (needs teacher)
    teacher = "resnet-34"            # registry name (trained first), run folder or saved model
    init_from_previous = true        # copy the previous step's weights by layer name

A ``[digits]`` table holds the small recipe for the embedded digits data (ours, minutes on 2 cores): its keys
replace the top-level ones (``[digits.arch]`` is merged into ``[arch]``, ``[[digits.steps]]`` replaces the
steps) when the data set is ``digits``. A ``[fashion-mnist]`` table does the same for 28x28 grey IDX data:
``fashion-mnist[:PATH]`` and ``idx:PATH`` (MNIST, KMNIST). ``--set KEY=VALUE`` overrides use dotted keys:
``lr``-like step keys as ``steps.0.lr`` (one step, 0-based) or ``steps.lr`` (every step); ``arch.width``;
top-level ``real``.
Values are TOML (``--set steps.lr=1e-3``, ``--set augment=none``; a bare word is a string).
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources

from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.inputs import regular_file

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = ("linear", "cosine", "constant", "multistep")
LOSSES = ("crossentropy", "distributional")
DECAY_ON = ("conv_kernels", "kernels", "all", "none")
AUGMENTS = ("none", "cifar", "imagenet")
TWIN_SUFFIX = "-real"  # NAME-real: the real-valued twin of NAME (its recipe with real = true)

# key -> (accepted types, default); a default of ... means required.
TOP_KEYS = {
    "model": (str, ...),
    "description": (str, ""),
    "dataset": (str, "digits"),
    "input_size": (int, None),
    "augment": (str, "none"),
    "flip": (bool, True),
    "real": (bool, False),
    "sync_batchnorm": (bool, False),
    "ours": (str, ""),
    "ede_t_min": ((float, int), 1e-3),
    "arch": (dict, {}),
    "paper": (dict, {}),
    "steps": (list, ...),
    "digits": (dict, None),
    "fashion-mnist": (dict, None),
}
# A data set table's name -> the data set kinds (edgebnn.data names, before any ':') it is used for.
DATASET_TABLES = {"digits": ("digits",), "fashion-mnist": ("fashion-mnist", "idx")}
STEP_KEYS = {
    "name": (str, None),
    "binary_weights": (bool, True),
    "binary_activations": (bool, True),
    "epochs": (int, ...),
    "batch_size": (int, ...),
    "optimizer": (str, "adam"),
    "lr": ((float, int), ...),
    "schedule": (str, "linear"),
    "milestones": (list, []),
    "momentum": ((float, int), 0.9),
    "weight_decay": ((float, int), 0.0),
    "weight_decay_on": (str, "kernels"),
    "label_smoothing": ((float, int), 0.0),
    "loss": (str, "crossentropy"),
    "teacher": (str, ""),
    "init_from_previous": (bool, True),
}
PAPER_KEYS = {
    "top1": ((float, int), None),
    "top5": ((float, int), None),
    "dataset": (str, ""),
    "source": (str, ""),
    "note": (str, ""),
}
ARCH_KEYS = {  # build() arguments; other keys are passed on as **kw and checked by the builder
    "width": ((float, int), None),
    "input_shape": (list, None),
    "num_classes": (int, None),
    "padding": (str, None),
}
PADDINGS = ("lce", "official", "zoo")  # archs.PADDINGS: "lce" (ours, the default) or the papers' code's
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "weight_decay_on": DECAY_ON,
           "augment": AUGMENTS}


def _models_dir():
    return resources.files("edgebnn.models")


def names() -> list[str]:
    """Every recipe shipped with edgebnn (file stems of ``models/*.toml``)."""
    return sorted(p.name[:-5] for p in _models_dir().iterdir() if p.name.endswith(".toml"))


def text(name: str) -> str:
    """The shipped recipe file of registered model ``name``, comments included (``edgebnn recipe NAME``)."""
    if name not in names():
        raise EdgebnnError(f"unknown recipe {name!r}; known: {', '.join(names())}")
    return (_models_dir() / f"{name}.toml").read_text()


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({str: "a string", int: "an integer", float: "a number", bool: "true or false",
                        list: "an array", dict: "a table"}[t] for t in types)


def _check_table(table: dict, spec: dict, where: str, prefix: str, *, open_keys: bool = False) -> dict:
    """Check keys and types of one table; return it with defaults filled in."""
    out = {}
    for key, value in table.items():
        if key not in spec:
            if open_keys:
                out[key] = value
                continue
            raise EdgebnnError(f"{where}: unknown key {prefix}{key!r}; known keys: {', '.join(spec)}")
        types, _ = spec[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in
                                                (types if isinstance(types, tuple) else (types,)))
        if not ok:
            raise EdgebnnError(f"{where}: key {prefix}{key} must be {_type_name(types)}, got {value!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise EdgebnnError(f"{where}: key {prefix}{key} = {value!r} is not one of: {', '.join(CHOICES[key])}")
        out[key] = value
    for key, (_, default) in spec.items():
        if key not in out:
            if default is ...:
                raise EdgebnnError(f"{where}: missing key {prefix}{key}")
            out[key] = copy.deepcopy(default)
    return out


def validate(raw: dict, where: str) -> dict:
    """A recipe with every key checked and every default filled in (``digits`` table left unmerged)."""
    recipe = _check_table(raw, TOP_KEYS, where, "")
    model = recipe["model"].removesuffix(TWIN_SUFFIX)
    if model not in names():  # every registered variant ships a recipe (checked by tests/test_recipe.py)
        raise EdgebnnError(f"{where}: unknown model {recipe['model']!r}; registered: {', '.join(names())}")
    recipe["arch"] = _check_table(recipe["arch"], ARCH_KEYS, where, "arch.", open_keys=True)
    _check_arch(recipe["arch"], where)
    recipe["paper"] = _check_table(recipe["paper"], PAPER_KEYS, where, "paper.")
    if not recipe["steps"]:
        raise EdgebnnError(f"{where}: steps is empty; give at least one [[steps]] table")
    steps = []
    for i, step in enumerate(recipe["steps"]):
        if not isinstance(step, dict):
            raise EdgebnnError(f"{where}: steps.{i} must be a table ([[steps]]), got {step!r}")
        step = _check_table(step, STEP_KEYS, where, f"steps.{i}.")
        step["name"] = step["name"] or f"step{i + 1}"
        for key in ("epochs", "batch_size"):
            if step[key] < 1:
                raise EdgebnnError(f"{where}: steps.{i}.{key} must be at least 1, got {step[key]}")
        for key in ("lr", "momentum", "weight_decay", "label_smoothing"):
            step[key] = float(step[key])
            if not step[key] >= 0 or step[key] == float("inf"):  # NaN and inf fail too
                raise EdgebnnError(f"{where}: steps.{i}.{key} must be a finite number of 0 or more, got {step[key]}")
        for key, top in (("label_smoothing", 1.0), ("momentum", 1.0)):  # both are fractions: 1 is no learning
            if step[key] >= top:
                raise EdgebnnError(f"{where}: steps.{i}.{key} must be in [0, 1), got {step[key]}")
        _check_milestones(step, f"{where}: steps.{i}")
        if step["loss"] == "distributional" and not step["teacher"]:
            raise EdgebnnError(f"{where}: steps.{i}.loss = 'distributional' needs steps.{i}.teacher "
                               f"(a registered model, a run folder or a saved model)")
        steps.append(step)
    recipe["steps"] = steps
    recipe["ede_t_min"] = float(recipe["ede_t_min"])
    if not 0 < recipe["ede_t_min"] < 10:
        raise EdgebnnError(f"{where}: ede_t_min must be above 0 and below EDE's end temperature 10, got "
                           f"{recipe['ede_t_min']}")
    if recipe["input_size"] is not None and recipe["input_size"] < 1:
        raise EdgebnnError(f"{where}: input_size must be at least 1, got {recipe['input_size']}")
    for table in DATASET_TABLES:
        if recipe[table] is None:
            continue
        for key in recipe[table]:
            if key not in TOP_KEYS or key == "model" or key in DATASET_TABLES:
                raise EdgebnnError(f"{where}: unknown key {table}.{key!r}; known keys: "
                                   f"{', '.join(k for k in TOP_KEYS if k != 'model' and k not in DATASET_TABLES)}")
        validate(_merge(raw, recipe[table]), f"{where} [{table}]")
    for table in DATASET_TABLES:
        if table != "digits" and recipe[table] is None:  # absent stays absent (a resumed run's recipe.toml)
            del recipe[table]
    return recipe


def dataset_table(dataset: str) -> str | None:
    """The name of the recipe table used for data set ``dataset`` (``digits``, ``fashion-mnist``), or None."""
    kind = dataset.split(":")[0].strip().lower()
    return next((t for t, kinds in DATASET_TABLES.items() if kind in kinds), None)


def _check_arch(arch: dict, where: str) -> None:
    """The values of the [arch] keys edgebnn knows: a positive width, an input shape of three positive sizes, two
    or more classes."""
    width, shape, classes = arch.get("width"), arch.get("input_shape"), arch.get("num_classes")
    if width is not None and not 0 < width < float("inf"):
        raise EdgebnnError(f"{where}: arch.width must be above 0, got {width}")
    if shape is not None and (len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                                          for d in shape)):
        raise EdgebnnError(f"{where}: arch.input_shape must be [height, width, channels] of sizes 1 or more, "
                           f"got {shape}")
    if classes is not None and classes < 2:
        raise EdgebnnError(f"{where}: arch.num_classes must be 2 or more, got {classes}")
    padding = arch.get("padding")
    if padding is not None and padding not in PADDINGS:
        raise EdgebnnError(f"{where}: arch.padding must be one of {', '.join(PADDINGS)}, got {padding!r}")


def _check_milestones(step: dict, where: str) -> None:
    """``multistep`` needs increasing whole epochs within the step; other schedules take none."""
    ms = step["milestones"]
    if step["schedule"] != "multistep":
        if ms:
            raise EdgebnnError(f"{where}.milestones is only for schedule = 'multistep' (schedule is "
                               f"{step['schedule']!r})")
        return
    if not ms or not all(isinstance(m, int) and not isinstance(m, bool) for m in ms) \
            or any(b <= a for a, b in zip(ms, ms[1:], strict=False)) or ms[0] < 1:
        raise EdgebnnError(f"{where}.milestones must be increasing epochs of 1 or more for schedule = "
                           f"'multistep', got {ms}")


def _merge(base: dict, over: dict) -> dict:
    """``over``'s keys replace ``base``'s; ``arch`` and ``paper`` tables are merged key by key."""
    out = {k: copy.deepcopy(v) for k, v in base.items() if k not in DATASET_TABLES}
    for key, value in over.items():
        if key in ("arch", "paper") and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def read(name_or_path: str) -> tuple[dict, str]:
    """The raw TOML table of recipe ``name_or_path`` and where it came from (for error messages)."""
    text, where = None, name_or_path
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = regular_file(name_or_path, "recipe file", if_folder="give a recipe .toml (see `edgebnn recipe NAME`)",
                            if_missing="give a recipe .toml (see `edgebnn recipe NAME`)",
                            if_other="give a recipe .toml (see `edgebnn recipe NAME`)")
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as err:
            raise EdgebnnError(f"recipe file {name_or_path} cannot be read as UTF-8 TOML "
                               f"({type(err).__name__}): give a recipe .toml (see `edgebnn recipe NAME`)") from None
    else:
        if name_or_path not in names() and name_or_path.endswith(TWIN_SUFFIX) and \
                name_or_path.removesuffix(TWIN_SUFFIX) in names():
            raw, where = read(name_or_path.removesuffix(TWIN_SUFFIX))
            raw["real"] = True
            return raw, f"{where} (real-valued twin)"
        if name_or_path not in names():
            raise EdgebnnError(f"unknown model {name_or_path!r}: no recipe models/{name_or_path}.toml; known: "
                               f"{', '.join(names())} (or give a recipe .toml path)")
        text = (_models_dir() / f"{name_or_path}.toml").read_text()
        where = f"models/{name_or_path}.toml"
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as err:
        raise EdgebnnError(f"{where} is not valid TOML: {err}") from None


def parse_value(text: str):
    """A ``--set`` value as TOML (``1e-3``, ``true``, ``[32, 32, 3]``, ``"x"``); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(raw: dict, assignment: str, where: str) -> None:
    """Apply one ``KEY=VALUE`` override in place (see the module docstring for the key scheme)."""
    key, eq, text = assignment.partition("=")
    key = key.strip()
    if not eq or not key:
        raise OptionError("{sets} {assignment!r} must look like KEY=VALUE (for example steps.lr=1e-3)",
                          assignment=assignment)
    value = parse_value(text.strip())
    parts = key.split(".")
    if parts[0] == "steps":
        steps = raw.get("steps") or []
        if len(parts) == 2:
            for step in steps:
                step[parts[1]] = value
            return
        if len(parts) == 3 and parts[1].isdigit():
            i = int(parts[1])
            if i >= len(steps):
                raise OptionError("{sets} {key}: {where} has {n} step(s), numbered from 0", key=key, where=where,
                                  n=len(steps))
            steps[i][parts[2]] = value
            return
        raise OptionError("{sets} {key}: use steps.KEY (every step) or steps.N.KEY (step N, from 0)", key=key)
    if parts[0] in ("arch", "paper") and len(parts) == 2:
        raw.setdefault(parts[0], {})[parts[1]] = value
        return
    if len(parts) != 1:
        raise OptionError("{sets} {key}: unknown key; use a top-level key, arch.KEY, paper.KEY or steps[.N].KEY",
                          key=key)
    raw[key] = value


def load(name_or_path: str, *, dataset: str | None = None, sets: list[str] | tuple = (),
         epochs: int | None = None, batch_size: int | None = None, real: bool | None = None) -> dict:
    """The resolved recipe: file, then its data set's table (``[digits]``, ``[fashion-mnist]``), then overrides.

    Every key and type is checked; a misspelled or ill-typed key is an :class:`EdgebnnError` naming the key
    and the file. The result carries ``source`` (where it came from) and has no data set tables.
    """
    raw, where = read(name_or_path)
    validate(raw, where)  # the file as written, before any override
    dataset_name = dataset or raw.get("dataset", "digits")
    table = dataset_table(dataset_name)
    if table is not None and isinstance(raw.get(table), dict):
        raw = _merge(raw, raw[table])
        where_used = f"{where} [{table}]"
    else:
        raw = {k: v for k, v in raw.items() if k not in DATASET_TABLES}
        where_used = where
    if dataset:
        raw["dataset"] = dataset
    for assignment in sets:
        apply_set(raw, assignment, where_used)
    if real is not None:
        raw["real"] = real
    for step in raw.get("steps") or []:
        if isinstance(step, dict):
            if epochs is not None:
                step["epochs"] = epochs
            if batch_size is not None:
                step["batch_size"] = batch_size
    label = where_used + (" with --set " + ", ".join(sets) if sets else "")
    recipe = validate(raw, label)
    for name in DATASET_TABLES:
        recipe.pop(name, None)
    if recipe["real"]:
        recipe = real_twin(recipe)
    recipe["source"] = where_used
    return recipe


def real_twin(recipe: dict) -> dict:
    """The recipe of the real-valued twin: one step with the last step's optimiser, float weights and
    activations, cross-entropy (no teacher), for the gap-to-float figures."""
    out = copy.deepcopy(recipe)
    last = dict(out["steps"][-1])
    last.update(name="real", binary_weights=False, binary_activations=False, loss="crossentropy", teacher="",
                init_from_previous=False, epochs=sum(s["epochs"] for s in recipe["steps"]))
    out["steps"] = [last]
    out["real"] = True
    return out


def total_epochs(recipe: dict) -> int:
    return sum(s["epochs"] for s in recipe["steps"])


def dumps(recipe: dict) -> str:
    """The resolved recipe as TOML (written to the run folder as ``recipe.toml``)."""
    lines, tables = [], []
    for key, value in recipe.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        elif key != "steps":
            lines.append(f"{key} = {_toml(value)}")
    for key, table in tables:
        lines += ["", f"[{key}]"] + [f"{k} = {_toml(v)}" for k, v in table.items() if v is not None]
    for step in recipe.get("steps", []):
        lines += ["", "[[steps]]"] + [f"{k} = {_toml(v)}" for k, v in step.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
