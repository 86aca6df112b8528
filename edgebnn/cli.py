"""The ``edgebnn`` command line: parse, call the library, print. No logic of its own lives here.

Every subcommand imports its library module inside its body, so that ``edgebnn --help`` does not pay for
importing TensorFlow.
"""

from __future__ import annotations

import errno
import json
import math
import shlex
import signal
import sys
import threading
from pathlib import Path

import click
from click.core import ParameterSource

from edgebnn import archs, conversion, data, quiet, recipe, reporting, training
from edgebnn.conversion import formatting, on_device
from edgebnn.conversion.proof import proof_failure
from edgebnn.devices import cleanup
from edgebnn.devices import config as devices
from edgebnn.devices.board import describe
from edgebnn.errors import EdgebnnError, OptionError, printable, printable_lines
from edgebnn.estimate import budget as budget_mod
from edgebnn.estimate import calibration
from edgebnn.estimate.emulated import estimate_files
from edgebnn.estimate.estimate import format_rows
from edgebnn.evaluate import evaluate
from edgebnn.importing import import_checkpoint
from edgebnn.machine import host_label
from edgebnn.outputs import check_name_length, probe_folder
from edgebnn.profiling import ProfileFailed, check_device, profile
from edgebnn.progress import progress_bar
from edgebnn.version import __version__


class _Group(click.Group):
    """A click group that turns :class:`EdgebnnError` into one clear line and a non-zero exit."""

    def invoke(self, ctx):
        previous = _terminate_as_interrupt()
        try:
            return super().invoke(ctx)
        except EdgebnnError as err:
            click.echo(f"error: {printable(_in_flags(err, ctx.invoked_subcommand))}", err=True)
            ctx.exit(err.exit_code)
        except OSError as err:  # a name over the file system's limit, met where no check named it first: bad input
            if err.errno != errno.ENAMETOOLONG:
                raise
            name = str(err.filename or "a path")
            click.echo(f"error: {printable(name[:60])}{'...' if len(name) > 60 else ''}: a name in it is longer than "
                       f"the file system allows; give a shorter name", err=True)
            ctx.exit(EdgebnnError.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        finally:
            if previous is not None:

                signal.signal(signal.SIGTERM, previous)


# The library names a parameter by its Python name (OptionError); the command line names it by its flag:
# --NAME-WITH-DASHES unless listed here.
_FLAGS = {"output": "-o", "name_or_path": "NAME", "sets": "--set", "real": "--twin", "fold": "--no-fold",
          "older_than_min": "--older-than", "run_roots": "--runs-dir"}
_COMMAND_FLAGS = {"report": {"out": "report --out"}}  # the report's own writes have always named their command


def _in_flags(err: EdgebnnError, command: str | None) -> str:
    """The error's message, with the parameters of an :class:`OptionError` written as this command line's flags."""
    if not isinstance(err, OptionError):
        return str(err)
    names = {**_FLAGS, **_COMMAND_FLAGS.get(command, {})}
    return err.worded({o: names.get(o, "--" + o.replace("_", "-")) for o in err.options})


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _terminate_as_interrupt():
    """SIGTERM (kill, a job scheduler, `timeout`) unwinds like Ctrl-C: what was started on a board is ended and its
    work folder removed. Returns the handler it replaced (None off the main thread, where none can be set)."""

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _verbose(ctx, param, value):

    if value:
        quiet.let_through()


verbose_option = click.option("--verbose", is_flag=True, expose_value=False, callback=_verbose,
                              help="Show TensorFlow's and absl's own log lines and Python warnings.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgebnn")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's and absl's own log lines and Python warnings.")
def main(verbose):
    """edgebnn: binary neural networks from paper to ARM board.

    \b
    The flow:
      edgebnn data NAME                      what a data set holds
      edgebnn models [NAME]                  the architectures (--counts: counted), NAME layer by layer
      edgebnn recipe [NAME]                  the shipped recipes; NAME's TOML to copy and edit
      edgebnn train NAME [--dataset digits]  train with the paper's recipe (or a recipe file)
      edgebnn import FILE                    a paper's published checkpoint as a run folder
      edgebnn eval RUN                       top-1 / top-5 of a run or model
      edgebnn convert RUN --target arm64     bitpacked flatbuffer, with proof
      edgebnn profile FILE --device local    latency on the host or a board (ssh://user@host)
      edgebnn report                         table, plots and index.html from the results
    """

    if verbose:
        quiet.let_through()
    else:
        quiet.keep_off_terminal()


checkpoint_option = click.option(
    "--checkpoint", type=click.Choice(["best", "last"]), default=None,
    help="Which model of a run folder: best (by validation top-1; the default, model.keras) or last "
         "(model-last.keras).")


def _quote(path) -> str:

    return shlex.quote(str(path))


def _at_least(**options) -> None:
    """Numeric options given below their least sensible value are refused (never silently replaced by a default)."""
    for name, (value, least) in options.items():
        if value is not None and value < least:
            raise EdgebnnError(f"--{name.replace('_', '-')} must be {least} or more, got {value}")


def _above_zero(**options) -> None:
    """Numbers that must be finite and above 0 (a latency budget, a width): 0, negatives, nan and inf are refused
    before any work starts."""
    for name, value in options.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is not None and not (math.isfinite(v) and v > 0):
                raise EdgebnnError(f"--{name.replace('_', '-')} must be a finite number above 0, got {v}")


def _print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


# ----------------------------------------------------------------------------------------------- data
@main.command("data")
@click.argument("name")
@click.option("--input-size", type=int, default=None, help="Resize images to this size (default: native).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_command(name, input_size, as_json):
    """Print what data set NAME holds: classes, counts, image size.

    NAME is `digits` (embedded), `cifar10`, `fashion-mnist` (Debian's dataset-fashion-mnist, or
    `fashion-mnist:PATH`), `idx:PATH` (an MNIST-format folder), `folder:PATH` or `tfds:NAME`.
    """

    _at_least(input_size=(input_size, 1))
    summary = data.describe(name, input_size=input_size, progress=not as_json)
    if as_json:
        _print_json(summary)
    else:
        click.echo(data.format_summary(summary))


# --------------------------------------------------------------------------------------------- models
@main.command("models")
@click.argument("name", required=False)
@click.option("--input-size", type=int, default=None, help="Square input size (default: the paper's).")
@click.option("--num-classes", type=int, default=None, help="Classes (default: the paper's).")
@click.option("--width", type=float, default=1.0, show_default=True, help="Channel width multiplier.")
@click.option("--twins", is_flag=True, help="Also list every binary variant's real-valued twin (NAME-real).")
@click.option("--counts", is_flag=True, help="Build every model and count params, binary weights, OPs and size "
              "(slow: tens of seconds at the papers' sizes).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@verbose_option
def models_command(name, input_size, num_classes, width, twins, counts, as_json):
    """List the registered architectures (instantly; --counts to count them), or show NAME layer by layer.

    OPs follow the papers: binary MACs / 64 + float MACs. Size packs binary weights to 1 bit.
    """

    _at_least(input_size=(input_size, 1), num_classes=(num_classes, 2))
    _above_zero(width=width)
    shape = (input_size, input_size, 3) if input_size else None
    if name:
        archs.get(name)  # an unknown name is one clear line
        if as_json:
            _print_json(archs.describe(name, shape, num_classes, width))
        else:
            click.echo(archs.summary(name, shape, num_classes, width))
        return
    names = archs.names(twins=twins)
    if counts:
        records = [archs.describe(n, shape, num_classes, width)
                   for n in progress_bar(names, desc="counting", enable=not as_json, unit="model")]
    else:
        records = [archs.facts(n, shape, num_classes, width) for n in names]
    if as_json:
        _print_json(records)
        return
    click.echo(archs.format_table(records))
    if not counts:
        click.echo("\ncounts (params, binary weights, OPs, size): edgebnn models --counts, or edgebnn models NAME")


# --------------------------------------------------------------------------------------------- recipe
@main.command("recipe")
@click.argument("name", required=False)
def recipe_command(name):
    """Print the recipe of registered model NAME (TOML), to copy and edit: edgebnn recipe bireal-18 > my.toml;
    then edgebnn train my.toml. Without NAME, list the recipes."""

    if name is None:
        click.echo("\n".join(recipe.names()))
        return
    click.echo(recipe.text(name), nl=False)


# ---------------------------------------------------------------------------------------------- train
@main.command("train")
@click.argument("name", metavar="NAME|RECIPE.toml", required=False)
@click.option("--dataset", default=None, help="Data set (digits, cifar10, fashion-mnist[:PATH], idx:PATH, "
              "folder:PATH, tfds:NAME); digits and fashion-mnist pick the recipe's [digits] or [fashion-mnist] table.")
@click.option("--epochs", type=int, default=None, help="Epochs of every recipe step.")
@click.option("--batch-size", type=int, default=None, help="Global batch size of every recipe step.")
@click.option("--out", default=None, help="Run folder (default: runs/NAME-TIMESTAMP).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, shuffling and augmentation.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key: steps.lr=1e-3 (every step), steps.0.epochs=2, arch.width=0.5, real=true.")
@click.option("--twin", is_flag=True, help="Train the real-valued twin (same layers, float weights and activations).")
@click.option("--resume", default=None, metavar="DIR", help="Continue the interrupted run in DIR.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default=None,
              help="mirrored: all local GPUs (or CPUs); multiworker: MultiWorkerMirroredStrategy from TF_CONFIG.")
@click.option("--weights", default=None, metavar="RUN|MODEL",
              help="Fine-tune from pretrained weights (a run folder, e.g. from edgebnn import, or a saved model): "
              "one fine-tuning step of ours, a new classifier when the class count differs, the weights' padding.")
@click.option("--summary", is_flag=True, help="Print Larq's layer table of the model before training.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@verbose_option
def train_command(name, dataset, epochs, batch_size, out, seed, sets, twin, resume, strategy, weights, summary,
                  quiet):
    """Train NAME (a registered recipe, see edgebnn recipe) or a recipe file; or --resume DIR.

    The run folder's model.keras is the best epoch by validation top-1, model-last.keras the last.
    """

    if resume and name:
        raise EdgebnnError("give either NAME|RECIPE.toml or --resume DIR, not both")
    run_dir = training.train(name, dataset=dataset, epochs=epochs, batch_size=batch_size, out=out, seed=seed,
                          sets=sets, resume=resume, strategy=strategy, real=True if twin else None,
                          progress=not quiet, summary=summary, weights=weights)
    click.echo(f"next: edgebnn convert {_quote(run_dir)} --target arm64")


# --------------------------------------------------------------------------------------------- import
@main.command("import")
@click.argument("file", metavar="FILE")
@click.option("--model", default=None, help="The edgebnn model to import into (default: from the checkpoint's keys).")
@click.option("--width", type=float, default=None, help="Width multiplier (default: from the checkpoint's shapes).")
@click.option("--num-classes", type=int, default=None, help="Classes (default: from the classifier's shape).")
@click.option("--input-size", type=int, default=None, help="Square input size (default: the paper's, 224 or 32).")
@click.option("--step", type=click.IntRange(1, 2), default=None,
              help="1: real weights (ReActNet's, the bnn library's first step); 2: binary (default: from the layout).")
@click.option("--out", default=None, help="Run folder to write (default: runs/NAME-TIMESTAMP).")
@verbose_option
def import_command(file, model, width, num_classes, input_size, step, out):
    """Import a published checkpoint (the official PyTorch .pth.tar, or Larq Zoo's BiRealNet .h5) as a run folder.

    The model follows the official code's convention (zero-padded binary convs, PyTorch's stride-2 placement), so
    it computes the checkpoint's own function; the accuracy printed is the checkpoint's own, not measured here.
    """

    _at_least(num_classes=(num_classes, 1), input_size=(input_size, 1))
    _above_zero(width=width)
    run_dir = import_checkpoint(file, model=model, out=out, width=width, num_classes=num_classes,
                                input_size=input_size, step=step, log=lambda line: click.echo(printable(line)))
    click.echo(f"run folder: {run_dir}")
    click.echo(f"next: edgebnn convert {_quote(run_dir)} --target arm64")


# ----------------------------------------------------------------------------------------------- eval
@main.command("eval")
@click.argument("source", metavar="RUN|MODEL")
@click.option("--dataset", default=None, help="Data set (default: the run's own).")
@checkpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print top-1, top-5 and n as JSON.")
@verbose_option
def eval_command(source, dataset, checkpoint, as_json):
    """Top-1 and top-5 accuracy of RUN|MODEL on a data set's validation split."""

    result = evaluate(source, dataset, progress=not as_json, checkpoint=checkpoint)
    if as_json:
        _print_json(result)
        return
    c = result["checkpoint"]
    which = f" ({c['which']} checkpoint, epoch {c['epoch']})" if c else ""
    click.echo(f"{result['model']}{which} on {result['dataset']} ({result['n']} validation images, "
               f"{host_label()}): top-1 {result['top1']:.2%}  top-5 {result['top5']:.2%}")


# -------------------------------------------------------------------------------------------- convert
@main.command("convert")
@click.argument("source", metavar="RUN|MODEL")
@click.option("--target", "-t", default="arm64", show_default=True,
              help="Target profile: arm64, armv7, x86_64, xcore (converters/*.toml) or a .toml file.")
@click.option("--out", "-o", "output", default=None, help="The .tflite to write (default: beside the model).")
@click.option("--output", "output_alias", default=None, hidden=True, help="The old name of --out.")
@click.option("--check-samples", type=int, default=100, show_default=True,
              help="Data set samples run through LCE's interpreter and Keras to prove the flatbuffer (0: skip).")
@click.option("--baselines", default="", help="Also write float and/or int8 TFLite of the real-valued twin.")
@click.option("--dataset", default=None, help="Data set for the proof (default: the run's; digits for a model file).")
@checkpoint_option
@click.option("--no-fold", "no_fold", is_flag=True, help="Convert the model as it is, without the deployment folds "
              "(BatchNorm before a sign as a threshold, RPReLU shifts moved into BatchNorms, one threshold per "
              "residual stream moved into the BatchNorm the stream starts from).")
@click.option("--verify-on", "verify_on", default=None, metavar="DEVICE",
              help="Also prove the flatbuffer on DEVICE's lce_benchmark_model: qemu:aarch64, ssh://USER@HOST or a "
              "devices.toml name.")
@click.option("--runner", default=None, help="The runner for --verify-on (a local file is uploaded to a board).")
@click.option("--ssh-config", default=None, help="An ssh -F config file for --verify-on.")
@click.option("--precision", default="float", show_default=True, type=click.Choice(["float", "int8"]),
              help="int8: the real-valued convs (stem, downsample shortcuts) with kh*kw*c_in >= 64 as int8 islands "
              "calibrated on 256 training images of the data set; binary convs stay LceBconv2d, the rest float.")
@click.option("--min-agreement", "min_agreement", type=float, default=0.99, show_default=True,
              help="An int8 flatbuffer's proof: the top-1 agreement with Keras it must reach on the check samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the conversion report as JSON.")
@verbose_option
def convert_command(source, target, output, output_alias, check_samples, baselines, dataset, checkpoint, no_fold,
                    verify_on, runner, ssh_config, precision, min_agreement, as_json):
    """Convert RUN|MODEL into an LCE flatbuffer for --target, and prove it answers like the Keras model.

    Writes FILE.tflite and its report FILE.tflite.json (op histogram, binary convs that became LceBconv2d,
    sizes, the proof on real samples, class names and normalisation, sha256).
    """

    if output is not None and output_alias is not None:
        raise EdgebnnError("--out and --output are the same option (--output is its old name): give one")
    output = output if output is not None else output_alias
    report = conversion.convert(source, target=target, output=output, check_samples=check_samples,
                             baselines=baselines, dataset=dataset, progress=not as_json, checkpoint=checkpoint,
                             fold=not no_fold, verify_on=verify_on, runner=runner, ssh_config=ssh_config,
                             precision=precision, min_agreement=min_agreement)
    if as_json:
        _print_json(report)
        return
    click.echo(printable_lines(conversion.format_report(report)))
    click.echo(f"next: edgebnn profile {_quote(report['output'])} --device local   (a board: -d ssh://USER@HOST)")


DEVICES_FILE_HELP = ("A devices.toml to read (default: ~/.config/edgebnn/devices.toml; ./devices.toml is never read "
                     "unless named here, and only your own file may set ssh_config or command-running ssh_options).")


@main.command("verify")
@click.argument("tflite", metavar="FILE.tflite")
@click.option("--device", "-d", required=True, help="qemu:aarch64, ssh://USER@HOST or a devices.toml name.")
@click.option("--runner", default=None, help="The device's lce_benchmark_model (a local file is uploaded to a board).")
@click.option("--check-samples", type=int, default=100, show_default=True, help="Data set samples to prove on.")
@click.option("--dataset", default=None, help="Data set (default: the one the flatbuffer was converted with).")
@click.option("--source", default=None, help="The Keras RUN|MODEL to compare with (default: the one converted).")
@click.option("--ssh-config", default=None, help="An ssh -F config file.")
@click.option("--devices-file", default=None, help=DEVICES_FILE_HELP)
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds per runner invocation.")
@click.option("--min-agreement", "min_agreement", type=float, default=None,
              help="An int8 flatbuffer's top-1 agreement with Keras to reach (default: its conversion's, else 0.99).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(tflite, device, runner, check_samples, dataset, source, ssh_config, devices_file, timeout,
                   min_agreement, as_json):
    """Prove FILE.tflite on DEVICE's own kernels: the check samples through its lce_benchmark_model against the
    Keras model it was converted from; the result joins FILE.tflite.json under device_checks."""

    result = on_device.verify(tflite, device, runner=runner, check_samples=check_samples, dataset=dataset,
                              source=source, devices_file=devices_file, ssh_config=ssh_config, timeout=timeout,
                              progress=not as_json, warn=lambda w: click.echo(f"warning: {printable(w)}", err=True),
                              min_agreement=min_agreement)
    if as_json:
        _print_json(result)
    else:
        rows = [("flatbuffer", f"{result['file']}  sha256 {result['sha256'][:16]}..."), ("source", result["source"])]
        rows += formatting.device_check_rows(result["check"])
        rows.append(("report", result["report_file"] or "none updated (no FILE.tflite.json of this file)"))
        click.echo(printable_lines(formatting.table(rows)))
    wrong = proof_failure(result["check"])
    if wrong:
        raise EdgebnnError(f"{result['file']} does not give the Keras model's answers on {device}: {wrong}")


# -------------------------------------------------------------------------------------------- profile
def _thread_counts(text):
    if not text:
        return None
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise EdgebnnError(f"--threads {text!r} is not a list of counts like 1,4") from None


@main.command("profile")
@click.argument("models", nargs=-1, required=True, metavar="FILE.tflite...")
@click.option("--device", "-d", "devices", multiple=True, default=("local",), show_default=True,
              help="local, ssh://user@host[:port], qemu:aarch64 (estimates for calibrated boards from instructions "
              "counted under QEMU on each board's own core; qemu:aarch64:CPU for QEMU core CPU's boards only, e.g. "
              "cortex-a76; needs --runner) or a NAME from devices.toml; repeat to profile boards in parallel.")
@click.option("--runner", default=None, help="Benchmark runner: a local lce_benchmark_model build (uploaded when "
              "the board lacks it) or a command on the board (default: the target's).")
@click.option("--target", default=None, help="Target profile for the board checks (default: from `uname -m`).")
@click.option("--threads", default=None, help="Thread counts, e.g. 1,4 (default: the target's; 1 on local).")
@click.option("--runs", type=int, default=None, help="Measured inferences (default: the target's).")
@click.option("--warmup", type=int, default=None, help="Warm-up inferences (default: the target's).")
@click.option("--op-profile", is_flag=True, help="Per-op profile (lce_benchmark_model --enable_op_profiling).")
@click.option("--db", default="results.db", show_default=True, help="SQLite results database.")
@click.option("--force", is_flag=True, help="Measure again what the database already holds.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds one benchmark run may take.")
@click.option("--devices-file", default=None, help=DEVICES_FILE_HELP)
@click.option("--ssh-config", default=None, help="An ssh -F config file for ssh:// devices.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def profile_command(models, devices, runner, target, threads, runs, warmup, op_profile, db, force, timeout,
                    devices_file, ssh_config, as_json):
    """Time converted models on this host and on boards over SSH; every result goes into --db."""

    failed = None
    try:
        results = profile(list(models), list(devices), threads=_thread_counts(threads), runs=runs, warmup=warmup,
                          op_profile=op_profile, db=db, force=force, runner=runner, target=target, timeout=timeout,
                          devices_file=devices_file, ssh_config=ssh_config, progress=not as_json)
    except ProfileFailed as err:  # what was measured is printed, then the failures as one error line
        results, failed = err.results, err
    _print_profile(results, db, as_json)
    if failed is not None:
        raise failed


def _print_profile(results: list[dict], db: str, as_json: bool) -> None:
    if as_json:
        _print_json(results)
        return
    estimated = [r for r in results if r.get("kind") == "estimate"]
    results = [r for r in results if r.get("kind") != "estimate"]
    if estimated:

        click.echo(printable_lines(format_rows(estimated)))
    if not results:
        click.echo(f"results in {db}")
        return
    w = max([20] + [len(r["model_name"]) for r in results])
    click.echo(f"{'model':<{w}} {'device':<28} {'thr':>3} {'mean':>9} {'median':>9} {'min':>9} {'p90':>9} "
               f"{'std':>8}  (ms)")
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9}"
    for r in results:
        skipped = "  (stored; --force to re-measure)" if r["status"] == "skipped" else ""
        click.echo(printable(f"{r['model_name']:<{w}} {r['device'][:28]:<28} {r['threads']:>3} "
                             f"{fmt(r['mean_ms'])} {fmt(r['median_ms'])} {fmt(r['min_ms'])} {fmt(r['p90_ms'])} "
                             f"{fmt(r['std_ms'])[1:]}{skipped}"))
        if r.get("flags"):  # why this figure should not be trusted (spread, load, threads, throttling)
            click.echo(f"{'':<{w}} ! noisy: {'; '.join(r['flags'])}")
    for machine in dict.fromkeys((r["device"], r["machine"], r["kernels"]) for r in results):
        click.echo(f"{machine[0]}: {machine[1]}; {machine[2]}")
    for r in results:
        for t in r["op_totals"]:
            click.echo(printable(f"  {r['model_name']} @ {r['device']} x{r['threads']}: {t['node_type']:<16} "
                                 f"{t['kind']:<6} {t['nodes']:>3} nodes {t['avg_ms']:9.3f} ms {t['pct']:5.1f}%"))
    click.echo(f"results in {db}")


@main.command("calibrate")
@click.option("--runner", required=True, help="The aarch64 lce_benchmark_model to calibrate (run under QEMU).")
@click.option("--out", default=None, help="Calibration file to write (default: ~/.config/edgebnn/calibrations/"
              "<runner sha256>.json, which qemu:aarch64 estimates with this runner then use).")
@click.option("--models-dir", default=None, help="Where the converted Larq Zoo flatbuffers are kept (default: the "
              "cache, ~/.cache/edgebnn/zoo).")
@click.option("--models", default=None, help="Comma-separated Larq Zoo models (default: all 13).")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
def calibrate_command(runner, out, models_dir, models, as_json):
    """Calibrate the board estimates for RUNNER: build the Larq Zoo architectures (weights=None, nothing
    downloaded; needs the zoo extra), convert them with LCE, count their instructions under QEMU, fit each
    board's published latencies and print each model's error when held out before the board model is chosen
    (nested leave-one-out: the error every estimate states, with the range it implies)."""

    cal, path = calibration.calibrate(runner, out=out, models_dir=models_dir,
                                      models=[m.strip() for m in models.split(",")] if models else None,
                                      progress=not as_json)
    if as_json:
        _print_json(cal)
        return
    click.echo(calibration.format_loo(cal))
    click.echo(f"calibration written to {path}")


@main.command("estimate")
@click.argument("models", nargs=-1, required=True, metavar="FILE.tflite...")
@click.option("--fast", is_flag=True, help="Predict the instructions from the op shapes (under a second) instead "
              "of counting them under QEMU (exact, ~40 s for a 224x224 model).")
@click.option("--runner", default=None, help="aarch64 lce_benchmark_model for the exact path (default: "
              "$LCE_RUNNER_AARCH64; without one, or without qemu-aarch64, the fast path is taken).")
@click.option("--threads", default=None, help="Only these calibrated thread counts, e.g. 1 (default: all).")
@click.option("--calibration", default=None, help="A calibration file (default: the runner's, else the shipped one).")
@click.option("--db", default="results.db", show_default=True, help="SQLite results database.")
@click.option("--force", is_flag=True, help="Estimate again what the database already holds.")
@click.option("--cpu", default=None, help="Only the boards counted on this QEMU core, e.g. cortex-a76 (the Pi 5's: "
              "uncalibrated, instructions only). Default: every calibrated board, each on its own core "
              "(cortex-a72 for the Pi 4B and the Pixel 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def estimate_command(models, fast, runner, threads, calibration, db, force, cpu, as_json):
    """Estimate ARM latency on every calibrated board, each counted on its own core, with its likely range and the
    path it came from."""

    results = estimate_files(list(models), runner=runner, fast=fast, threads=_thread_counts(threads),
                             calibration=calibration, db=db, force=force, cpu=cpu,
                             warn=lambda w: click.echo(f"warning: {printable(w)}", err=True))
    click.echo(json.dumps(results, indent=1, default=str) if as_json
               else printable_lines(format_rows(results)) + f"\nresults in {db}")


@main.command("budget")
@click.argument("family")
@click.option("--board", required=True, help="A calibrated board: pi4b, pixel1.")
@click.option("--ms", "budget", required=True, type=float, help="The latency budget in ms.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--widths", default=None, help="Width multipliers to try (default: 0.5,0.75,1).")
@click.option("--sizes", default=None, help="Input sizes to try, e.g. 160,224 (default: the family's own).")
@click.option("--classes", "num_classes", type=int, default=None, help="Classes (default: the family's).")
@click.option("--exact", is_flag=True, help="Count each candidate under QEMU (~40 s at 224x224) instead of the "
              "fast path.")
@click.option("--runner", default=None, help="aarch64 lce_benchmark_model for --exact (default: $LCE_RUNNER_AARCH64).")
@click.option("--precision", "precisions", default=None, help="float, int8 or float,int8 (default: float): each "
              "candidate built in each; int8 as convert --precision int8 builds it, its islands' ranges taken on "
              "synthetic images (latency only).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def budget_command(family, board, budget, threads, widths, sizes, num_classes, exact, runner, precisions, as_json):
    """Which widths and input sizes of FAMILY fit BOARD within --ms: each candidate built, converted and
    estimated (fast path by default: ~5-30 s per candidate, nearly all of it building and converting).
    Exit 1 when none fits."""

    def numbers(text, kind, flag):
        try:
            return [kind(v) for v in text.split(",") if v.strip()] if text else None
        except ValueError:
            raise EdgebnnError(f"{flag} {text!r} is not a comma-separated list of numbers like 0.5,1") from None

    widths, sizes = numbers(widths, float, "--widths"), numbers(sizes, int, "--sizes")
    _above_zero(ms=budget, widths=widths)  # before any candidate is built
    _at_least(threads=(threads, 1), classes=(num_classes, 2), sizes=(min(sizes or [1]), 1))
    precisions = budget_mod.parse_precisions(precisions)
    result = budget_mod.answer(family, board, budget, threads, widths or budget_mod.DEFAULT_WIDTHS, sizes,
                               num_classes, exact=exact, runner=runner, precisions=precisions)
    for w in result["warnings"]:
        click.echo(f"warning: {printable(w)}", err=True)
    click.echo(json.dumps(result, indent=1) if as_json else printable_lines(budget_mod.format_answer(result)))
    if not any(r["verdict"] == "fits" for r in result["rows"]):
        sys.exit(1)


@main.group("devices")
def devices_group():
    """Boards by name (devices.toml): list them, check one."""


@devices_group.command("list")
@click.option("--devices-file", default=None, help=DEVICES_FILE_HELP)
def devices_list_command(devices_file):
    """The boards of devices.toml."""

    known = devices.load(devices_file)
    if not known:
        click.echo(f"no devices file ({devices.devices_file(devices_file) or devices.USER_FILE}); `local` always "
                   f"works{devices.ignored_local_file(devices_file)}")
        return
    for d in known.values():
        click.echo(f"{d.name:<16} {d.ssh:<32} runner={d.runner or '(target default)'} target={d.target or 'auto'}"
                   + (f"  # {d.notes}" if d.notes else ""))
    click.echo(f"from {next(iter(known.values())).source}{devices.ignored_local_file(devices_file)}")


@devices_group.command("check")
@click.argument("name")
@click.option("--runner", default=None, help="Runner to check (default: the device's, else the target's).")
@click.option("--target", default=None, help="Target profile (default: from `uname -m`).")
@click.option("--devices-file", default=None, help=DEVICES_FILE_HELP)
@click.option("--ssh-config", default=None, help="An ssh -F config file.")
@click.option("--json", "as_json", is_flag=True, help="Print facts and problems as JSON.")
@click.pass_context
def devices_check_command(ctx, name, runner, target, devices_file, ssh_config, as_json):
    """Print board NAME's facts and any problem (runner architecture, glibc, 32-bit OS, governor, throttling)."""

    report = check_device(name, runner=runner, target=target, devices_file=devices_file, ssh_config=ssh_config)
    if as_json:
        _print_json(report)
    else:
        click.echo(printable(f"{report['device']}" + (f"  # {report['notes']}" if report.get("notes") else "")))
        here = report["device"] == "local" or report["device"].startswith("qemu:")  # this host (emulating or not)
        click.echo(printable_lines(f"  board        {report['facts']['label']}" if here else describe(report["facts"])))
        click.echo(f"  target       {report['target'] or 'host'}\n  runner       {report['runner'] or 'none'}")
        for w in report["warnings"]:
            click.echo(f"warning: {printable(w)}")
        for p in report["problems"]:
            click.echo(f"problem: {printable(p)}")
        if not report["problems"]:
            click.echo("ok: ready to profile")
    if report["problems"]:
        ctx.exit(EdgebnnError.exit_code)  # a board that is not ready is bad input like any other: exit 2


@devices_group.command("clean")
@click.argument("name")
@click.option("--older-than", type=float, default=10, show_default=True,
              help="Minutes after which a work folder with no benchmark running counts as left over.")
@click.option("--kill-running", is_flag=True, help="Also end benchmarks still running and remove their folders.")
@click.option("--devices-file", default=None, help=DEVICES_FILE_HELP)
@click.option("--ssh-config", default=None, help="An ssh -F config file.")
def devices_clean_command(name, older_than, kill_running, devices_file, ssh_config):
    """Remove what killed runs left: edgebnn.* work folders on board NAME (ending their benchmarks) and this
    host's SSH control folders whose edgebnn process is gone. A folder whose run is alive is kept."""

    _at_least(older_than=(older_than, 0))
    if math.isnan(older_than):
        raise EdgebnnError("--older-than must be a number of minutes, 0 or more, got nan")
    dev = devices.resolve(name, devices_file, ssh_config=ssh_config)
    found = cleanup.clean_local()
    if dev.kind == "ssh":
        found += [{**f, "path": f"{dev.name}:{f['path']}"}
                  for f in cleanup.clean_board(dev, older_than_min=older_than, kill_running=kill_running)]
    for f in found:
        click.echo(printable(f"{f['path']}: {f['action']}"))
    removed = sum(1 for f in found if f["remove"])
    click.echo(f"{removed} removed, {len(found) - removed} kept" if found else "nothing left over")


# --------------------------------------------------------------------------------------------- report
def _run_roots(ctx, run_roots, old_run_roots) -> tuple[list[str], str | None]:
    """The folders of --runs-dir and of its old name --runs together, and the flag the user named them with (None:
    the default ./runs)."""
    named = ctx.get_parameter_source("run_roots") is not ParameterSource.DEFAULT
    if not old_run_roots:
        return list(run_roots), "--runs-dir" if named else None
    return [*(run_roots if named else ()), *old_run_roots], "--runs-dir" if named else "--runs"


def _check_report_places(out, run_roots, flag) -> None:
    """--runs-dir folders named by the user must exist (the default ./runs may be absent); --out must be writable."""



    if flag is not None:
        missing = [r for r in run_roots if not Path(r).is_dir()]
        if missing:
            raise EdgebnnError(f"{flag} {missing[0]} is not a folder: give the folder that holds your run folders")
    check_name_length(out, "--out")  # before any stat: a name over the limit is ENAMETOOLONG there
    if Path(out).exists() and not Path(out).is_dir():
        raise EdgebnnError(f"--out {out} is a file; give a folder for the report")
    probe_folder(out, "--out")


@main.command("report")
@click.option("--db", default="results.db", show_default=True, help="The results database.")
@click.option("--out", default="report", show_default=True, help="Folder for index.html, plots and results.json.")
@click.option("--runs-dir", "run_roots", multiple=True, default=("runs",), show_default=True,
              help="Folders to search for run folders and conversion reports (repeatable).")
@click.option("--budget", default=None, metavar="LATENCY", help="A latency budget (30ms, 0.03s): name the most "
              "accurate trained model that meets it on --board, from measured or estimated latency.")
@click.option("--board", default=None, help="The board of --budget: a device name in the results (pi4b, pi4, "
              "local...).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows (and the budget's answer) as JSON.")
@click.pass_context
@click.option("--runs", "old_run_roots", multiple=True, hidden=True, help="The old name of --runs-dir.")
def report_command(ctx, db, out, run_roots, old_run_roots, budget, board, as_json):
    """Compare every stored result: a table, plots (accuracy against latency with the Pareto front and latency
    against threads, one panel per device and latency kind; latency by op type) and an index.html.

    Each latency says what it is: measured on a board, measured on this host, or estimated (and from what).
    With --budget 30ms --board pi4b: the most accurate trained model within 30 ms on pi4b (exit 1 when none is).
    """

    run_roots, flag = _run_roots(ctx, run_roots, old_run_roots)
    _check_report_places(out, run_roots, flag)
    if bool(budget) != bool(board):
        raise EdgebnnError("--budget and --board go together: edgebnn report --budget 30ms --board pi4b")
    budget_ms = reporting.parse_budget(budget) if budget else None
    problems: list[str] = []
    rows = reporting.collect(db, run_roots, problems)
    for problem in problems:
        click.echo(f"warning: {printable(problem)}", err=True)
    answer = reporting.best_under_budget(rows, budget_ms, board) if budget else None
    written = reporting.write(db, out, run_roots, budget=reporting.format_budget(answer) if answer else None,
                           rows=rows)
    if as_json:
        _print_json({"rows": written["rows"], "budget": answer} if answer else written["rows"])
    else:
        click.echo(printable_lines(reporting.format_table(written["rows"])) + "\n")
        click.echo(printable_lines("\n".join(reporting.notes(written["rows"]))))
        if answer:
            click.echo("\n" + printable_lines(reporting.format_budget(answer)))
        click.echo(f"report: {written['index']}")
    if answer and answer["choice"] is None:
        ctx.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
