"""Training with a recipe (``edgebnn train``): a custom ``tf.function`` loop so that resuming is exact.

Per recipe step (``edgebnn.recipe``), the model is built by ``edgebnn.archs.build`` with the step's binarization
(step 1 of ReActNet/SD-BNN: binary activations, real weights; step 2: both binary), its weights copied by layer
name from the previous step (``init_from_previous``), and trained with:

- Adam / SGD (momentum) / AdamW, Keras' legacy optimizers (what Larq supports), epsilon 1e-8 as in PyTorch;
- learning rate ``lr * (1 - t/T)`` (linear), ``lr * (1 + cos(pi t/T)) / 2`` (cosine) or constant, t the step
  within the recipe step, T its total number of steps;
- weight decay ``wd`` on the chosen parameters (``conv_kernels``: every conv kernel, rank 4; ``kernels``: every
  weight of rank > 1, i.e. conv and FC kernels; ``all``; ``none``): added to the gradient (g + wd w, PyTorch's
  coupled decay) for adam/sgd, decoupled (w <- w - lr_t wd w) for adamw (``apply_weight_decay``);
- cross-entropy with label smoothing, or ReActNet's distributional loss against a teacher,
  L = -1/n sum_i sum_k softmax(t_i)_k log softmax(s_i)_k (``edgebnn.archs.common.distributional_loss``).

A run folder (``edgebnn.runs``) gets ``run.json``, ``recipe.toml``, ``metrics.csv`` (one row per epoch),
TensorBoard logs, ``checkpoints/last`` and ``checkpoints/best`` (model + optimizer + epoch and step counters, best
of the current step), ``checkpoints/<step name>/model`` (each earlier step's final weights), ``model.keras`` (the
best epoch of the last step by validation top-1) and ``model-last.keras`` (the last epoch).
Order at the end of an epoch: metrics row, then checkpoint, then run.json; on resume, rows after the checkpoint's
epoch are dropped and that epoch is trained again, so metrics.csv has no gaps or repeats.
Data order is exact on resume too: the epoch's shuffle is reached by opening (and dropping) one iterator per
epoch already done.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebnn import archs, data, finetune, runs
from edgebnn import recipe as recipes
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.inputs import read_regular
from edgebnn.machine import host_label
from edgebnn.outputs import write_atomic
from edgebnn.progress import progress_bar
from edgebnn.runlock import RunLock
from edgebnn.runs import check_run_folder

METRIC_FIELDS = ("epoch", "step", "loss", "top1", "top5", "val_loss", "val_top1", "val_top5", "lr", "seconds")
STRATEGIES = ("default", "mirrored", "multiworker")


class Diverged(OptionError):
    """The loss became NaN or infinite."""


# ------------------------------------------------------------------------------------------- pieces
def learning_rate(kind: str, base: float, total_steps: int, *, steps_per_epoch: int = 1, milestones=()):
    """A Keras schedule of the step counter t of T: linear to 0, lr (1 - t/T); cosine to 0,
    lr (1 + cos(pi t/T)) / 2; constant; multistep, lr 0.1^m with m the ``milestones`` (epochs) already completed
    (PyTorch's MultiStepLR stepped after each epoch; the bnn library steps it before, one epoch earlier)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    class Schedule(tf.keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            t = tf.minimum(tf.cast(step, tf.float32) / float(max(1, total_steps)), 1.0)
            if kind == "linear":
                return base * (1.0 - t)
            if kind == "cosine":
                return base * 0.5 * (1.0 + tf.cos(math.pi * t))
            if kind == "multistep":
                epoch = tf.cast(step, tf.int64) // max(1, steps_per_epoch)
                passed = tf.reduce_sum(tf.cast(epoch >= tf.constant(list(milestones) or [0], tf.int64), tf.float32))
                return base * tf.pow(0.1, passed if milestones else 0.0)
            return tf.constant(base, tf.float32)

        def get_config(self):
            return {"kind": kind, "base": base, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
                    "milestones": list(milestones)}

    return Schedule()


def make_optimizer(step: dict, schedule):
    import tensorflow as tf  # lazy: loads TensorFlow

    if step["optimizer"] == "sgd":
        return tf.keras.optimizers.legacy.SGD(schedule, momentum=step["momentum"])
    return tf.keras.optimizers.legacy.Adam(schedule, epsilon=1e-8)  # adam and adamw (decay applied by us)


def decayed_variables(model, which: str) -> list:
    """The variables that get weight decay: ``conv_kernels`` (rank 4: every conv kernel, as ReActNet's official
    code, whose FC weight gets none), ``kernels`` (rank > 1: conv and FC kernels), ``all`` or ``none``."""
    if which == "none":
        return []
    if which == "all":
        return list(model.trainable_variables)
    rank = 4 if which == "conv_kernels" else 2
    return [v for v in model.trainable_variables if len(v.shape) >= rank]


def apply_weight_decay(grads, variables, decay_vars, wd: float, lr_t, *, decoupled: bool) -> list:
    """Weight decay ``wd`` on ``decay_vars``. Coupled (adam, sgd; PyTorch's ``weight_decay``): the gradient becomes
    g + wd w. Decoupled (adamw; Loshchilov & Hutter): w <- w - lr_t wd w now, the gradient unchanged."""
    if not wd:
        return grads
    decay_ids = {id(v) for v in decay_vars}
    if decoupled:
        for v in decay_vars:
            v.assign_sub(lr_t * wd * v)
        return grads
    return [g + wd * v if id(v) in decay_ids and g is not None else g for g, v in zip(grads, variables, strict=True)]


def classification_loss(labels, logits, num_classes: int, smoothing: float):
    """Cross-entropy against smoothed one-hot targets, (1 - e) onehot(y) + e / K, averaged over the batch."""
    import tensorflow as tf  # lazy: loads TensorFlow

    return tf.reduce_mean(tf.keras.losses.categorical_crossentropy(
        tf.one_hot(labels, num_classes), logits, from_logits=True, label_smoothing=smoothing))


def _sync_batchnorm(model):
    """The same model with every BatchNormalization synchronised across replicas."""
    import tensorflow as tf  # lazy: loads TensorFlow

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    return tf.keras.models.clone_model(model, clone_function=clone)


def build_model(recipe: dict, step: dict, input_shape, num_classes: int):
    """The recipe's architecture with the step's binarization (``real = true``: both off)."""

    kw = {k: v for k, v in recipe["arch"].items() if v is not None and k not in ("input_shape", "num_classes")}
    try:
        return archs.build(recipe["model"], input_shape=tuple(input_shape), num_classes=num_classes,
                           binary_weights=step["binary_weights"], binary_activations=step["binary_activations"],
                           **kw)
    except EdgebnnError:
        raise
    except TypeError as err:
        raise EdgebnnError(f"model {recipe['model']}: bad [arch] arguments {kw} ({err})") from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{err.__class__.__name__}: {text}"[:300] if text else err.__class__.__name__


def check_model_name(name: str) -> None:

    if name not in archs.names():
        raise EdgebnnError(f"unknown model {name!r} in the recipe; registered: {', '.join(archs.names())}")


def make_strategy(name: str | None):
    """``default`` (one device), ``mirrored`` (all local devices) or ``multiworker`` (TF_CONFIG)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    name = name or "default"
    if name not in STRATEGIES:
        raise EdgebnnError(f"unknown strategy {name!r}; use one of: {', '.join(STRATEGIES)}")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise OptionError("{strategy} multiworker needs TF_CONFIG (cluster worker addresses and this "
                              "worker's task index) in the environment")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


# --------------------------------------------------------------------------------------- metrics csv
def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / runs.METRICS
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            int(row["epoch"])
    except (UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError):
        raise EdgebnnError(f"{path} is corrupt (not edgebnn's CSV with an epoch column); restore it, or delete it "
                           "to resume without the earlier rows") from None
    return rows


def _rewrite_metrics(run_dir, rows: list[dict]) -> None:
    path = Path(run_dir) / runs.METRICS
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue(), "metrics")


def _append_metrics(run_dir, row: dict) -> None:
    path = Path(run_dir) / runs.METRICS
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=METRIC_FIELDS).writerow(row)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------ teacher
def resolve_teacher(spec: str, recipe: dict, run_dir: Path | None, *, dataset: str, input_shape, num_classes,
                    seed: int, strategy_name: str | None, progress: bool, verbose: bool):
    """The teacher model: a run folder or saved model, or a registered model trained first (in the run folder's
    ``teacher-NAME/``, reused or resumed when already there)."""

    path = Path(spec)
    if path.exists():
        model, _ = runs.load_model(path)
    elif spec in archs.names():
        if run_dir is None:
            raise EdgebnnError(f"teacher {spec} must be trained first, which needs a run folder")
        teacher_dir = run_dir / f"teacher-{spec}"
        if not (teacher_dir / runs.FINAL_MODEL).is_file():
            if verbose:
                print(f"training the teacher {spec} first, in {teacher_dir}", flush=True)
            if runs.is_run_dir(teacher_dir):
                train(resume=teacher_dir, strategy=strategy_name, progress=progress, verbose=verbose)
            else:
                train(spec, dataset=dataset, out=teacher_dir, seed=seed, strategy=strategy_name,
                      sets=[f"input_size={input_shape[0]}"], progress=progress, verbose=verbose)
        model, _ = runs.load_model(teacher_dir)
    else:
        raise EdgebnnError(f"teacher {spec!r} of {recipe.get('model')} is neither a registered model nor an "
                           f"existing run folder or saved model; train it first or fix steps.teacher")
    if tuple(model.input_shape[1:]) != tuple(input_shape) or int(model.output_shape[-1]) != num_classes:
        raise EdgebnnError(f"teacher {spec} takes {tuple(model.input_shape[1:])} and gives "
                           f"{model.output_shape[-1]} classes; the student needs {tuple(input_shape)} and "
                           f"{num_classes}")
    model.trainable = False
    return model


# ------------------------------------------------------------------------------------------- resume
def _chief_by_tf_config(strategy: str | None) -> bool:
    """Whether this process writes the run folder, known before TensorFlow loads: always, except a multiworker
    worker that TF_CONFIG names neither chief nor worker 0."""

    if strategy != "multiworker":
        return True
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task") or {}
    except (ValueError, AttributeError):
        return True
    return task.get("type") == "chief" or (task.get("type") == "worker" and int(task.get("index", 0)) == 0)


CHECKPOINT_STATE_LIMIT = 1 << 20  # bytes of checkpoints/last/checkpoint, a few lines of text that TensorFlow writes


def _check_state_file(state: Path) -> None:
    """TensorFlow's checkpoint state file (``model_checkpoint_path: "ckpt-3"``), when there is one: a regular file
    of text, else one line (TensorFlow would block on a FIFO and raise UnicodeDecodeError on random bytes)."""
    if not state.exists() and not state.is_symlink():
        return
    why = "restore the checkpoint folder from a copy, or start a new run; nothing was changed"
    data = read_regular(state, "checkpoint state file", hint=why, limit=CHECKPOINT_STATE_LIMIT)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise EdgebnnError(f"checkpoint state file {state} is not text (TensorFlow writes a few lines naming the "
                           f"checkpoint): it is corrupt; {why}") from None


def resume_point(run_dir: Path, epochs_done: int | None = None) -> tuple[int, int, str | None]:
    """(recipe step index, epochs done overall, checkpoint path) from ``checkpoints/last``; (0, 0, None) when the
    run finished no epoch. A checkpoint that is missing while ``run.json`` counts finished epochs, or that cannot be
    read to its last byte, is refused: resuming must never silently start again at epoch 0."""
    import tensorflow as tf  # lazy: loads TensorFlow

    last = run_dir / runs.CHECKPOINTS / "last"
    done = runs.read_info(run_dir).get("epochs_done", 0) if epochs_done is None else epochs_done
    _check_state_file(last / "checkpoint")
    path = tf.train.latest_checkpoint(str(last))
    if not path:
        if isinstance(done, int) and done > 0:
            raise EdgebnnError(f"{last} holds no checkpoint, yet {run_dir} finished {done} epoch(s): restore the "
                               "checkpoint folder, or start a new run (resuming would silently restart at epoch 0)")
        return 0, 0, None
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():  # every tensor read: a truncated data file fails here
            reader.get_tensor(name)
        return (int(reader.get_tensor("recipe_step/.ATTRIBUTES/VARIABLE_VALUE")),
                int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")), path)
    except (tf.errors.OpError, ValueError, KeyError, IndexError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise EdgebnnError(f"checkpoint {path} is corrupt ({first}): restore {last} from a copy, or start a new "
                           "run; nothing was changed") from None


# -------------------------------------------------------------------------------------------- train
def train(name_or_path: str | None = None, *, dataset: str | None = None, epochs: int | None = None,
          batch_size: int | None = None, out: str | os.PathLike | None = None, seed: int = 0,
          sets=(), resume: str | os.PathLike | None = None, strategy: str | None = None,
          real: bool | None = None, progress: bool = True, verbose: bool = True, summary: bool = True,
          runs_root="runs", weights: str | os.PathLike | None = None) -> Path:
    """Train a recipe (registry name or ``.toml`` path) or resume the run folder ``resume``; returns the run
    folder. ``weights``: fine-tune from a run folder or saved model instead (:mod:`edgebnn.finetune`). See the
    module docstring for what it writes."""

    lock, pretrained = None, None
    if resume is not None:
        changes = [f"{{{param}}}" for param, value in (("name_or_path", name_or_path), ("dataset", dataset),
                                                         ("epochs", epochs), ("batch_size", batch_size),
                                                         ("sets", sets), ("real", real), ("out", out),
                                                         ("weights", weights)) if value]
        if changes:
            raise OptionError(f"{{resume}} continues a run with its own recipe; drop {', '.join(changes)} "
                              f"(or start a new run)")
        run_dir = Path(resume)
        info = runs.read_info(run_dir)
        path = run_dir / runs.RECIPE
        if not path.is_file():
            raise EdgebnnError(f"{run_dir} has no {runs.RECIPE}; it cannot be resumed")

        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise EdgebnnError(f"{path} is not valid TOML ({err}): restore it from the recipe the run "
                               "started from") from None
        raw.pop("source", None)
        recipe = recipes.validate(raw, str(path))
        recipe.pop("digits", None)
        recipe["source"] = info.get("recipe", str(path))
        seed = int(info.get("seed", seed))
        strategy = strategy or info.get("strategy")
        if info.get("status") == "done" and (run_dir / runs.FINAL_MODEL).is_file():
            if verbose:
                print(f"{run_dir} is already complete ({info.get('epochs_done')} epochs)", flush=True)
            return run_dir
        if _chief_by_tf_config(strategy):  # other workers of a multiworker run write nothing: no lock, no check
            lock = RunLock(run_dir)
            lock.acquire()  # refuses a run still training, before anything is read or changed
            try:
                read_metrics(run_dir)
                resume_point(run_dir)
            except BaseException:
                lock.release()
                raise
    else:
        if name_or_path is None:
            raise OptionError("give a model name or recipe file to train, or {resume:=DIR}")
        if seed < 0 or seed >= 2**32:
            raise OptionError("{seed} must be from 0 to {most}, got {value}", most=2**32 - 1, value=seed)
        if out is not None and _chief_by_tf_config(strategy):

            check_run_folder(out)  # a file, an existing run or a read-only place fails now, not after training
        recipe = recipes.load(name_or_path, dataset=dataset, sets=list(sets), epochs=epochs,
                              batch_size=batch_size, real=real)
        run_dir = None
        if weights is not None:
            pretrained = finetune.load_pretrained(weights)
            recipe = finetune.finetune_recipe(recipe, pretrained, sets=sets)
    check_model_name(recipe["model"])
    trainer = _Trainer(recipe, run_dir=run_dir, out=out, seed=seed, strategy_name=strategy, progress=progress,
                       verbose=verbose, runs_root=runs_root, resuming=resume is not None)
    trainer.summary, trainer.lock = summary, lock
    trainer.pretrained = pretrained
    try:
        return trainer.run()
    finally:
        if trainer.lock is not None:
            trainer.lock.release()


@dataclass
class _Step:
    """One recipe step being trained: what ``_Trainer``'s step methods share."""
    index: int
    spec: dict  # the recipe's step
    first_epoch: int  # epochs of the earlier steps
    ds: Any  # edgebnn.data's data set, batched for this step
    steps_per_epoch: int
    schedule: Any
    model: Any
    optimizer: Any
    teacher: Any  # None unless the loss is distributional
    epoch_var: Any  # the checkpoint's counters
    best_var: Any
    last: Any  # tf.train.CheckpointManager of checkpoints/last
    best: Any  # ... and of checkpoints/best


class _Trainer:
    pretrained = None  # finetune.Pretrained: the weights the first step starts from

    def __init__(self, recipe, *, run_dir, out, seed, strategy_name, progress, verbose, runs_root, resuming):
        self.recipe, self.seed, self.progress, self.verbose = recipe, seed, progress, verbose
        self.strategy_name = strategy_name or "default"
        self.run_dir, self.out, self.runs_root, self.resuming = run_dir, out, runs_root, resuming

    def log(self, text: str) -> None:
        if self.verbose and self.chief:
            print(text, flush=True)

    # ------------------------------------------------------------------------------------ set-up
    def run(self) -> Path:
        import tensorflow as tf  # lazy: loads TensorFlow


        recipe = self.recipe
        tf.get_logger().setLevel("ERROR")  # AutoGraph's notes about Larq's QuantizedVariable are noise
        tf.keras.utils.set_random_seed(self.seed)
        tf.config.experimental.enable_op_determinism()
        self.strategy = make_strategy(self.strategy_name)
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = _is_chief(self.strategy)
        for i, step in enumerate(recipe["steps"]):
            if step["batch_size"] % self.replicas:
                raise OptionError("steps.{i}.batch_size = {size} is not divisible by the {n} replicas of "
                                  "{strategy} {name}; use a multiple of {n}", i=i, size=step["batch_size"],
                                  n=self.replicas, name=self.strategy_name)
        # The data set: statistics and classes (pipelines are made per step, for the step's batch size).
        self.data_kw = dict(input_size=recipe["input_size"], augment=recipe["augment"], flip=recipe["flip"],
                            seed=self.seed)
        self.drop_remainder = self.strategy_name != "default"
        probe = data.load(recipe["dataset"], batch_size=recipe["steps"][0]["batch_size"], **self.data_kw)
        self.input_shape, self.num_classes = probe.input_shape, probe.num_classes

        archs.check_size(recipe["model"], self.input_shape, self.num_classes,  # before the run folder is made
                         float(recipe["arch"].get("width") or 1.0))
        if self.pretrained is not None and recipe["arch"].get("padding") not in (None, "lce"):  # zero padding
            from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

            model = build_model(recipe, recipe["steps"][0], self.input_shape, self.num_classes)
            small = stats.zero_padding_too_small(stats.binary_conv_layers(model))
            if small:
                raise EdgebnnError(f"{len(small)} zero-padded binary convs of the fine-tuned {recipe['model']} would "
                                   f"see a feature map smaller than their kernel ({small[0]}), which LCE 0.16 "
                                   f"computes wrong (convert refuses it): use a larger input size (72 px or more "
                                   f"for the ImageNet layouts); nothing was trained")

        if self.run_dir is None:
            name = recipe["model"] + ("-real" if recipe["real"] else "")
            if self.chief:

                self.run_dir = runs.new_run_dir(name, self.out, root=self.runs_root)
                self.lock = RunLock(self.run_dir)  # a --resume of this run while it trains is refused
                self.lock.acquire()
            else:
                self.run_dir = Path(self.out) if self.out else Path(self.runs_root) / name
        self.write_dir = self.run_dir if self.chief else Path(tempfile.mkdtemp(prefix="edgebnn-worker-"))
        if self.resuming and self.chief:
            info = runs.read_info(self.run_dir)
            info.pop("failure", None)
            runs.write_info(self.run_dir, {**info, "status": "running"})
        if not self.resuming and self.chief:

            write_atomic(self.run_dir / runs.RECIPE, recipes.dumps({k: v for k, v in recipe.items()
                                                                    if k != "source"}), "{out}")
            _rewrite_metrics(self.run_dir, [])
            runs.write_info(self.run_dir, {
                "name": self.run_dir.name, "model": recipe["model"], "recipe": recipe.get("source"),
                "real": recipe["real"], "dataset": recipe["dataset"], "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "class_names": probe.class_names, "mean": list(probe.mean),
                "std": list(probe.std), "augment": recipe["augment"], "seed": self.seed,
                "strategy": self.strategy_name, "replicas": self.replicas, "status": "running",
                "epochs_done": 0, "total_epochs": recipes.total_epochs(recipe), "best_val_top1": None,
                "final_val_top1": None, "paper": recipe["paper"], "ours": recipe["ours"],
                "edgebnn_version": __import__("edgebnn").__version__, "machine": host_label(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "padding": recipe["arch"].get("padding") or "lce",
                "width": float(recipe["arch"].get("width") or 1.0),
                **({"weights": finetune.provenance(self.pretrained)} if self.pretrained is not None else {}),
            })
        try:
            self._train_steps()
        except Diverged:
            self._record_end("diverged")
            raise
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, and SIGTERM (the CLI turns it into KeyboardInterrupt)
            self._record_end("interrupted")
            raise
        except (OSError, tf.errors.OpError) as err:  # a full disk, a lost file system, TensorFlow's own errors
            self._record_end("failed", _one_line(err))
            raise EdgebnnError(f"training stopped: {_one_line(err)[:200]}; the run keeps its last whole epoch: fix "
                               f"the cause, then edgebnn train --resume {self.run_dir}") from None
        except BaseException as err:
            self._record_end("failed", _one_line(err))
            raise
        finally:
            if not self.chief:
                shutil.rmtree(self.write_dir, ignore_errors=True)
        return self.run_dir

    def _record_end(self, status: str, failure: str | None = None) -> None:
        """Record how training ended; a run.json that cannot be written (a full disk) keeps the error that ended
        training as the one reported."""
        if not (self.chief and runs.is_run_dir(self.run_dir)):
            return
        try:
            runs.update_info(self.run_dir, status=status, **({"failure": failure} if failure else {}))
        except (EdgebnnError, OSError):  # a full disk: rewritten within the file's own blocks
            runs.write_status_in_place(self.run_dir, status, failure)

    def _resume_point(self) -> tuple[int, int, str | None]:
        return resume_point(self.run_dir)

    def _train_steps(self) -> None:
        import tensorflow as tf  # lazy: loads TensorFlow

        recipe = self.recipe
        start_step, epochs_done, ckpt_path = self._resume_point() if self.resuming else (0, 0, None)
        if self.chief:
            rows = [r for r in read_metrics(self.run_dir) if int(r["epoch"]) <= epochs_done]
            _rewrite_metrics(self.run_dir, rows)
            if self.resuming:
                self.log(f"resuming {self.run_dir} after epoch {epochs_done} (step "
                         f"{recipe['steps'][start_step]['name']})")
        self.tb = tf.summary.create_file_writer(str(self.write_dir / runs.TENSORBOARD))
        teachers = {}
        for step in recipe["steps"]:
            if step["loss"] == "distributional" and step["teacher"] not in teachers:
                teachers[step["teacher"]] = None
        for spec in teachers:
            with self.strategy.scope():
                teachers[spec] = resolve_teacher(
                    spec, recipe, self.run_dir, dataset=recipe["dataset"], input_shape=self.input_shape,
                    num_classes=self.num_classes, seed=self.seed, strategy_name=None
                    if self.strategy_name == "default" else self.strategy_name, progress=self.progress,
                    verbose=self.verbose)

        offset, previous = 0, None
        for index, step in enumerate(recipe["steps"]):
            first_epoch = offset
            offset += step["epochs"]
            if index < start_step:
                continue
            tf.keras.utils.set_random_seed(self.seed + index)
            model = self._train_step(index, step, first_epoch, epochs_done, ckpt_path if index == start_step
                                     else None, previous, teachers.get(step["teacher"]))
            previous = model
        self._finish(previous)

    def _build(self, step):
        model = build_model(self.recipe, step, self.input_shape, self.num_classes)
        if self.recipe["sync_batchnorm"] and self.replicas > 1:
            model = _sync_batchnorm(model)
        return model

    # --------------------------------------------------------------------------------- one step
    def _train_step(self, index, step, first_epoch, epochs_done, ckpt_path, previous, teacher):
        """One recipe step: set it up, train its remaining epochs, keep its final weights if a step follows."""
        import tensorflow as tf  # lazy: loads TensorFlow

        s = self._set_up_step(index, step, first_epoch, ckpt_path, previous, teacher)
        train_batch, eval_batch = self._step_functions(s)
        self._run_epochs(s, train_batch, eval_batch, epochs_done)
        if index < len(self.recipe["steps"]) - 1:  # keep each earlier step's final weights (the handover's source)
            tf.train.Checkpoint(model=s.model).write(str(self.write_dir / runs.CHECKPOINTS / step["name"] / "model"))
        return s.model

    def _set_up_step(self, index, step, first_epoch, ckpt_path, previous, teacher) -> _Step:
        """The step's data, schedule, model, optimizer and checkpoints; restored from ``ckpt_path``, else weights
        carried over by layer name from ``previous`` when the step asks for it."""
        import tensorflow as tf  # lazy: loads TensorFlow


        ds = data.load(self.recipe["dataset"], batch_size=step["batch_size"], **self.data_kw)
        steps_per_epoch = ds.num_train // step["batch_size"] if self.drop_remainder \
            else math.ceil(ds.num_train / step["batch_size"])
        if steps_per_epoch < 1:
            raise EdgebnnError(f"steps.{index}.batch_size = {step['batch_size']} is larger than the "
                               f"{ds.num_train} training images")
        schedule = learning_rate(step["schedule"], step["lr"], steps_per_epoch * step["epochs"],
                                 steps_per_epoch=steps_per_epoch, milestones=step["milestones"])

        with self.strategy.scope():
            model = self._build(step)
            optimizer = make_optimizer(step, schedule)
            optimizer._create_all_weights(model.trainable_variables)  # slots exist before a restore
        # Counters live outside the strategy: plain host variables, saved with the model and optimizer.
        epoch_var = tf.Variable(first_epoch, dtype=tf.int64, trainable=False, name="epoch")
        step_var = tf.Variable(index, dtype=tf.int64, trainable=False, name="recipe_step")
        best_var = tf.Variable(-1.0, dtype=tf.float32, trainable=False, name="best_val_top1")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, recipe_step=step_var,
                                         best_val_top1=best_var)
        last = tf.train.CheckpointManager(checkpoint, str(self.write_dir / runs.CHECKPOINTS / "last"), 1)
        best = tf.train.CheckpointManager(checkpoint, str(self.write_dir / runs.CHECKPOINTS / "best"), 1)
        if ckpt_path:
            checkpoint.restore(ckpt_path).assert_existing_objects_matched()
        elif index == 0 and self.pretrained is not None:
            copied, new_head = finetune.load_weights_into(model, self.pretrained)
            self.log(f"{step['name']}: {len(copied)} weights from {self.pretrained.path}"
                     + (f"; a new classifier {new_head} for {self.num_classes} classes" if new_head else ""))
        elif previous is not None and step["init_from_previous"]:
            copied = archs.carry_over_weights(previous, model)
            self.log(f"{step['name']}: {len(copied)} weights initialised from "
                     f"{self.recipe['steps'][index - 1]['name']} (copied by layer name)")
        s = _Step(index, step, first_epoch, ds, steps_per_epoch, schedule, model, optimizer, teacher, epoch_var,
                  best_var, last, best)
        self._announce(s)
        return s

    def _announce(self, s: _Step) -> None:
        """The chief's header line for the step (and the model summary with ``--summary``)."""
        if not (self.chief and self.verbose):
            return
        import larq  # lazy: Larq loads TensorFlow

        recipe, step = self.recipe, s.spec
        print(f"== {recipe['model']}{' (real-valued twin)' if recipe['real'] else ''} | step "
              f"{s.index + 1}/{len(recipe['steps'])} {step['name']}: binary weights {step['binary_weights']}, "
              f"binary activations {step['binary_activations']}, {step['epochs']} epochs, "
              f"{step['optimizer']} lr {step['lr']:g} {step['schedule']}, batch {step['batch_size']}, "
              f"loss {step['loss']}" + (f" (teacher {step['teacher']})" if s.teacher is not None else ""),
              flush=True)
        if self.summary:
            larq.models.summary(s.model)

    def _step_functions(self, s: _Step):
        """The compiled ``train_batch(iterator)`` (one distributed optimizer step; sums of loss n, top-1, top-5
        hits and n over the replicas) and ``eval_batch(x, y)`` (the same sums, on one replica)."""
        import tensorflow as tf  # lazy: loads TensorFlow


        step, strategy = s.spec, self.strategy
        model, optimizer, schedule, teacher = s.model, s.optimizer, s.schedule, s.teacher
        decay_vars = decayed_variables(model, step["weight_decay_on"]) if step["weight_decay"] > 0 else []
        wd, decoupled = step["weight_decay"], step["optimizer"] == "adamw"
        smoothing, replicas = step["label_smoothing"], self.replicas
        num_classes, k5 = self.num_classes, min(5, self.num_classes)
        distill = step["loss"] == "distributional"

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                if distill:
                    t_logits = teacher(x, training=False)
                    loss = archs.common.distributional_loss(t_logits, logits)
                else:
                    loss = classification_loss(y, logits, num_classes, smoothing)
                total = loss + (tf.add_n(model.losses) if model.losses else 0.0)
                scaled = total / replicas
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            grads = apply_weight_decay(grads, variables, decay_vars, wd, schedule(optimizer.iterations),
                                       decoupled=decoupled)
            optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables, strict=True) if g is not None])
            n = tf.cast(tf.shape(y)[0], tf.float32)
            top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, 1), tf.float32))
            top5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, k5), tf.float32))
            return loss * n, top1, top5, n

        @tf.function(autograph=False)  # AutoGraph: ~30 s more tracing, nothing gained
        def train_batch(iterator):
            results = strategy.run(replica_step, args=next(iterator))
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

        @tf.function(autograph=False)  # AutoGraph: ~30 s more tracing, nothing gained
        def eval_batch(x, y):
            logits = model(x, training=False)
            loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            return (tf.reduce_sum(loss), tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, 1), tf.float32)),
                    tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, k5), tf.float32)),
                    tf.cast(tf.shape(y)[0], tf.float32))

        return train_batch, eval_batch

    # -------------------------------------------------------------------------------- the epochs
    def _run_epochs(self, s: _Step, train_batch, eval_batch, epochs_done: int) -> None:
        """Train and evaluate the step's epochs after ``epochs_done`` (overall), each ending in ``_end_epoch``."""

        step = s.spec
        # With replicas, training drops the last partial batch (equal shares per replica); validation runs on
        # one replica over every image.
        train = s.ds.train.unbatch().batch(step["batch_size"], drop_remainder=True) if self.drop_remainder \
            else s.ds.train
        train_ds = self.strategy.experimental_distribute_dataset(train)
        done_here = max(0, epochs_done - s.first_epoch)
        for _ in range(done_here):  # reach this epoch's shuffle: one (dropped) iterator per epoch done
            iter(train_ds)
        for local in range(done_here, step["epochs"]):
            epoch = s.first_epoch + local + 1
            archs.set_training_progress(s.model, local / step["epochs"], ede_t_min=self.recipe["ede_t_min"])
            lr_now = float(s.schedule(s.optimizer.iterations))
            started = time.perf_counter()
            sums = self._train_epoch(s, train_batch, train_ds, epoch)
            vals = [0.0, 0.0, 0.0, 0.0]
            for x, y in s.ds.val:
                vals = [a + float(b) for a, b in zip(vals, eval_batch(x, y), strict=True)]
            seconds = time.perf_counter() - started
            row = {"epoch": epoch, "step": step["name"], "loss": sums[0] / sums[3], "top1": sums[1] / sums[3],
                   "top5": sums[2] / sums[3], "val_loss": vals[0] / vals[3], "val_top1": vals[1] / vals[3],
                   "val_top5": vals[2] / vals[3], "lr": lr_now, "seconds": seconds}
            self._end_epoch(s, row)

    def _train_epoch(self, s: _Step, train_batch, train_ds, epoch: int) -> list[float]:
        """One pass over the training data with a progress bar; the sums of loss n, top-1, top-5 and n. A loss
        that is not finite stops the run (``Diverged``), naming the last good checkpoint."""
        import tensorflow as tf  # lazy: loads TensorFlow


        sums = [0.0, 0.0, 0.0, 0.0]
        iterator = iter(train_ds)
        bar = progress_bar(range(s.steps_per_epoch), desc=f"epoch {epoch}/{recipes.total_epochs(self.recipe)}",
                           unit="batch", enable=self.progress and self.chief)
        for _ in bar:
            out = [float(v) for v in train_batch(iterator)]
            if not math.isfinite(out[0]):
                bar.close()
                good = tf.train.latest_checkpoint(str(self.run_dir / runs.CHECKPOINTS / "last"))
                raise Diverged("loss became {loss:g} in epoch {epoch} ({step}, lr {lr:.3g}); stopped. "
                               + ("Last good checkpoint: {good}; lower the learning rate ({sets:=steps.lr=...}) and "
                                  "start again" if good else
                                  "No epoch had completed; lower the learning rate ({sets:=steps.lr=...})"),
                               loss=out[0] / max(out[3], 1), epoch=epoch, step=s.spec["name"],
                               lr=float(s.schedule(s.optimizer.iterations)), good=good)
            sums = [a + b for a, b in zip(sums, out, strict=True)]
            bar.set_postfix(loss=f"{sums[0] / sums[3]:.4f}", top1=f"{sums[1] / sums[3]:.3f}")
        bar.close()
        return sums

    def _end_epoch(self, s: _Step, row: dict) -> None:
        """Log the epoch's row (rounded to 6 decimals), then write, in this order: metrics.csv, ``checkpoints/last``
        (and ``best`` when validation top-1 improved), run.json. Only the chief writes the run folder."""
        import tensorflow as tf  # lazy: loads TensorFlow

        epoch, lr_now, seconds = row["epoch"], row["lr"], row["seconds"]
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        self.log(f"epoch {epoch}/{recipes.total_epochs(self.recipe)} {s.spec['name']}: loss {row['loss']:.4f} "
                 f"top1 {row['top1']:.2%} | val loss {row['val_loss']:.4f} top1 {row['val_top1']:.2%} "
                 f"top5 {row['val_top5']:.2%} | lr {lr_now:.3g} | {seconds:.1f}s")
        with self.tb.as_default(step=epoch):
            for key in METRIC_FIELDS[2:]:
                tf.summary.scalar(key, row[key])
        self.tb.flush()
        if self.chief:
            _append_metrics(self.run_dir, row)
        s.epoch_var.assign(epoch)
        improved = row["val_top1"] > float(s.best_var.numpy())
        if improved:
            s.best_var.assign(row["val_top1"])
        s.last.save()
        if improved:
            s.best.save()
        if self.chief:
            runs.update_info(self.run_dir, epochs_done=epoch, recipe_step=s.index, step_name=s.spec["name"],
                             best_val_top1=float(s.best_var.numpy()), final_val_top1=row["val_top1"],
                             **({"best_epoch": epoch} if improved else {}))

    def _finish(self, model) -> None:
        """Save the last epoch's model as ``model-last.keras``, then the best epoch's (validation top-1, last
        recipe step: ``checkpoints/best``) as ``model.keras``, and say in run.json which is which."""
        import tensorflow as tf  # lazy: loads TensorFlow

        if model is None:
            return
        model.save(self.write_dir / runs.LAST_MODEL)
        best = tf.train.latest_checkpoint(str(self.write_dir / runs.CHECKPOINTS / "best"))
        if best:
            tf.train.Checkpoint(model=model).read(best).expect_partial()
        model.save(self.write_dir / runs.FINAL_MODEL)
        if not self.chief:
            return
        info = runs.read_info(self.run_dir)
        last = {"file": runs.LAST_MODEL, "epoch": info.get("epochs_done"), "val_top1": info.get("final_val_top1")}
        chosen = {"file": runs.FINAL_MODEL, "epoch": info.get("best_epoch"), "val_top1": info.get("best_val_top1")}
        if not best:  # no epoch improved on the step's start (cannot happen with top-1 >= 0): keep the last
            chosen = {**last, "file": runs.FINAL_MODEL}
        runs.update_info(self.run_dir, status="done", finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                         checkpoints={"best": chosen, "last": last})
        self.log(f"done: {self.run_dir}: model.keras is the best epoch, {chosen['epoch']} of {last['epoch']} (val "
                 f"top-1 {chosen['val_top1']:.2%}); the last epoch ({last['val_top1']:.2%}) is in "
                 f"{runs.LAST_MODEL}")
