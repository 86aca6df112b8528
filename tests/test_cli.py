"""The command-line group and the package import contract."""

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner

import edgebnn
from edgebnn.cli import main

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"edgebnn, version {edgebnn.__version__}"
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "data" in result.output


def test_help_does_not_import_tensorflow():
    code = "import sys; from edgebnn.cli import main; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_sets_legacy_keras_before_tensorflow_and_larq_works():
    code = (
        "import os; os.environ['TF_USE_LEGACY_KERAS'] = '0'\n"
        "import edgebnn, tensorflow as tf, larq as lq\n"
        "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.layers.Layer.__module__.split('.')[0])\n"
        "layer = lq.layers.QuantDense(2, kernel_quantizer='ste_sign')\n"
        "print(isinstance(layer, tf.keras.layers.Layer))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    flag, keras_package, *rest = out.stdout.split()
    assert flag == "1" and keras_package == "tf_keras" and rest == ["True"]


def test_data_command_prints_counts():
    result = CliRunner().invoke(main, ["data", "digits"])
    assert result.exit_code == 0, result.output
    assert "1,438 images" in result.output and "359 images" in result.output


def test_data_command_json():
    result = CliRunner().invoke(main, ["data", "digits", "--json", "--input-size", "16"])
    summary = json.loads(result.stdout)
    assert summary["num_classes"] == 10 and summary["input_size"] == 16


def test_bad_input_is_one_line_and_non_zero(tmp_path):
    for args in (["data", "imagenette"], ["data", f"folder:{tmp_path / 'missing'}"]):
        proc = subprocess.run([EDGEBNN, *args], capture_output=True, text=True)
        assert_one_error_line(proc, only=True)


def test_models_json_record_has_the_counts():
    result = CliRunner().invoke(main, ["models", "bireal-18", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    for key in ["name", "family", "paper", "input_shape", "params", "binary_params", "binary_macs", "float_macs",
                "ops", "size_mb"]:
        assert key in record
    assert record["params"] == 11_699_112 and record["input_shape"] == [224, 224, 3]
    assert abs(record["ops"] - (record["binary_macs"] / 64 + record["float_macs"])) <= 1


def test_models_summary_is_layer_by_layer_and_unknown_is_one_line():
    runner = CliRunner()
    result = runner.invoke(main, ["models", "reactnet-18", "--input-size", "32", "--num-classes", "10",
                                  "--width", "0.25"])
    assert result.exit_code == 0, result.output
    assert "stage1_conv1_rsign" in result.stdout and "binary convs: 16" in result.stdout
    bad = runner.invoke(main, ["models", "bireal-19"])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("error: unknown model 'bireal-19'")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_models_lists_the_registry_without_building_or_importing_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from edgebnn.cli import main\n"
            "r = CliRunner().invoke(main, ['models'])\n"
            "print(r.exit_code, 'tensorflow' in sys.modules)\nprint(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    status, table = out.split("\n", 1)
    assert status == "0 False"
    from edgebnn import archs

    lines = {ln.split()[0]: ln.split() for ln in table.splitlines() if ln and ln.split()[0] in archs.names()}
    assert set(lines) == set(archs.names())
    assert lines["bireal-18"][1:5] == ["bireal", "224x224x3", "1000", "binary"]
    assert lines["sdbnn-resnet20"][2:5] == ["32x32x3", "10", "binary"] and lines["resnet-18"][4] == "real"
    assert "edgebnn models --counts" in table


def test_models_json_without_counts_and_gamma_cases_agree():
    from edgebnn import archs
    from edgebnn.archs import xnorpp

    assert archs.GAMMA_CASES == xnorpp.GAMMA_CASES
    records = json.loads(CliRunner().invoke(main, ["models", "--json", "--twins"]).stdout)
    by_name = {r["name"]: r for r in records}
    assert len(records) == len(archs.names(twins=True)) and "params" not in records[0]
    assert by_name["bireal-18-real"]["binary"] is False and by_name["reactnet-a"]["reported"]["ops"] == 0.87e8


def test_recipe_prints_a_file_that_trains_as_the_registered_name(tmp_path):
    from edgebnn import recipe

    result = CliRunner().invoke(main, ["recipe", "bireal-18"])
    assert result.exit_code == 0 and result.stdout.startswith("# bireal-18")
    mine = tmp_path / "my.toml"
    mine.write_text(result.stdout)
    ours, theirs = recipe.load(str(mine), dataset="digits"), recipe.load("bireal-18", dataset="digits")
    assert {k: v for k, v in ours.items() if k != "source"} == {k: v for k, v in theirs.items() if k != "source"}
    listing = CliRunner().invoke(main, ["recipe"]).stdout.split()
    assert listing == recipe.names() and "sdbnn-resnet20" in listing
    bad = CliRunner().invoke(main, ["recipe", "bireal-19"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: unknown recipe 'bireal-19'")


@pytest.mark.slow
def test_profiled_rows_are_named_by_the_run_and_model_in_the_metadata(tmp_path):
    from profile_fixtures import tiny_tflite

    from edgebnn.tflite.describe import embed_metadata

    plain = tiny_tflite().read_bytes()
    files = {}
    for run, model in (("bireal-18-20261123-101500", "bireal-18"), ("mine", "reactnet-18")):
        folder = tmp_path / run
        folder.mkdir()
        files[run] = folder / "model-arm64.tflite"
        files[run].write_bytes(embed_metadata(plain, {"model": model, "name": run, "target": "arm64"}))
    # A baseline has no metadata: its name comes from the conversion report beside the binary flatbuffer.
    baseline = tmp_path / "mine" / "model-arm64.float.tflite"
    baseline.write_bytes(plain)
    sidecar = {"sha256": "0" * 64, "source": {"name": "mine", "model": "reactnet-18"},
               "baselines": {"float": {"sha256": hashlib.sha256(plain).hexdigest()}}}
    (tmp_path / "mine" / "model-arm64.tflite.json").write_text(json.dumps(sidecar))
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(embed_metadata(plain, {"not": "edgebnn's"}, name="other"))
    args = ["profile", *map(str, [*files.values(), baseline, bare]), "--runs", "2", "--warmup", "1",
            "--db", str(tmp_path / "r.db")]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert [r["model_name"] for r in json.loads(result.stdout)] == [
        "bireal-18-20261123-101500", "reactnet-18 (mine)", "reactnet-18 (mine) float baseline (real-valued twin)",
        "bare"]
    table = CliRunner().invoke(main, args).stdout
    line = next(ln for ln in table.splitlines() if ln.startswith("reactnet-18 (mine) float baseline"))
    assert line.split()[6:8] == ["local", "1"] and "(stored; --force to re-measure)" in line


def test_reading_the_metadata_does_not_import_tensorflow(tmp_path):
    from profile_fixtures import tiny_tflite

    from edgebnn.tflite.describe import embed_metadata

    path = tmp_path / "m.tflite"
    path.write_bytes(embed_metadata(tiny_tflite().read_bytes(), {"model": "bireal-18", "name": "run", "n": [1, 2]}))
    code = ("import sys; from edgebnn.tflite import read_metadata\n"
            f"print(read_metadata({str(path)!r}), read_metadata({str(path)!r}, 'other'), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "{'model': 'bireal-18', 'n': [1, 2], 'name': 'run'} None False"


# A real tiny run, trained by the installed command with stdout and stderr piped (not a terminal), as in a log.
# At lr 0.3 (constant) its validation top-1 peaks before the last epoch, so best and last differ.
TINY = ["bireal-18", "--dataset", "digits", "--epochs", "4", "--set", "arch.width=0.125", "--set", "input_size=16",
        "--set", "steps.schedule=constant", "--set", "steps.lr=0.3"]
CHATTER = ("WARNING:tensorflow", "absl", "oneDNN", "cuda", "W0000", "I0000", "XNNPACK")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    proc = subprocess.run([EDGEBNN, "train", *TINY, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.slow
def test_train_prints_epochs_one_done_line_and_the_next_command(tiny_run):
    run, proc = tiny_run
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"next: edgebnn convert {run} --target arm64"
    assert sum(ln.startswith("done") for ln in lines) == 1 and "run folder" not in proc.stdout
    assert [ln.split(" train:")[0] for ln in lines if ln.startswith("epoch")] == [f"epoch {i}/4" for i in (1, 2, 3, 4)]
    assert "stats---" not in proc.stdout  # Larq's layer table only with --summary
    assert "\r" not in proc.stderr and not [w for w in CHATTER if w in proc.stderr]
    # one progress line per epoch (a short bar prints only its end), whole lines
    assert [ln.split(" batch")[0] for ln in proc.stderr.splitlines()] == [f"epoch {i}/4: 23/23" for i in (1, 2, 3, 4)]


@pytest.mark.slow
def test_model_keras_is_the_best_epoch_and_the_last_is_kept(tmp_path, monkeypatch):
    """The run's validation top-1 is scripted (0.5, 0.8, 0.6, 0.4: it peaks at epoch 2 whatever this CPU's
    floating point does); model.keras must hold epoch 2's weights and model-last.keras epoch 4's, each evaluating
    to what that epoch really measured."""
    import numpy as np

    from edgebnn import runs, training

    scripted = {1: 0.5, 2: 0.8, 3: 0.6, 4: 0.4}
    measured, weights = {}, {}
    original = training._Trainer._end_epoch

    def end_epoch(self, s, row):
        measured[row["epoch"]], weights[row["epoch"]] = row["val_top1"], [w.copy() for w in s.model.get_weights()]
        original(self, s, {**row, "val_top1": scripted[row["epoch"]]})

    monkeypatch.setattr(training._Trainer, "_end_epoch", end_epoch)
    sets = [TINY[i + 1] for i, a in enumerate(TINY) if a == "--set"]
    run = training.train("bireal-18", dataset="digits", epochs=4, sets=sets, out=tmp_path / "run", progress=False,
                         verbose=False, summary=False)
    assert [float(r["val_top1"]) for r in csv.DictReader(open(run / "metrics.csv"))] == [0.5, 0.8, 0.6, 0.4]
    info = runs.read_info(run)
    assert info["checkpoints"]["best"] == {"file": "model.keras", "epoch": 2, "val_top1": pytest.approx(0.8, abs=1e-6)}
    assert info["checkpoints"]["last"] == {"file": "model-last.keras", "epoch": 4,
                                           "val_top1": pytest.approx(0.4, abs=1e-6)}
    for file, epoch in ((runs.FINAL_MODEL, 2), (runs.LAST_MODEL, 4)):
        saved = runs.load_model(run / file)[0].get_weights()
        assert all(np.allclose(a, b) for a, b in zip(saved, weights[epoch], strict=True)), file
    assert not all(np.allclose(a, b) for a, b in zip(weights[2], weights[4], strict=True))
    best = json.loads(CliRunner().invoke(main, ["eval", str(run), "--json"]).stdout)
    last = json.loads(CliRunner().invoke(main, ["eval", str(run), "--checkpoint", "last", "--json"]).stdout)
    assert best["top1"] == pytest.approx(measured[2], abs=1e-5) and best["checkpoint"]["which"] == "best"
    assert last["top1"] == pytest.approx(measured[4], abs=1e-5) and last["checkpoint"]["epoch"] == 4
    text = CliRunner().invoke(main, ["eval", str(run)]).stdout
    assert "(best checkpoint, epoch 2) on digits (359 validation images" in text
    bad = CliRunner().invoke(main, ["eval", str(run / "model.keras"), "--checkpoint", "last"])
    assert bad.exit_code == 2 and "--checkpoint picks a model within a run folder" in bad.stderr


@pytest.mark.slow
def test_convert_of_the_last_checkpoint_says_so_and_prints_the_next_command(tiny_run):
    from edgebnn.tflite.describe import read_metadata

    run, _ = tiny_run
    proc = subprocess.run([EDGEBNN, "convert", str(run), "--checkpoint", "last", "--check-samples", "20"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = run / "model-last-arm64.tflite"
    assert proc.stdout.splitlines()[-1].startswith(f"next: edgebnn profile {out} --device local")
    assert f"{run} (run, last checkpoint: epoch 4, val top-1" in proc.stdout
    assert read_metadata(out)["checkpoint"]["which"] == "last" and not (run / "model-arm64.tflite").exists()
    assert "\r" not in proc.stderr and not [w for w in CHATTER if w in proc.stderr]


@pytest.mark.slow
def test_summary_and_verbose_on_request(tiny_run, tmp_path):
    run, _ = tiny_run
    proc = subprocess.run([EDGEBNN, "train", *TINY[:4], "1", *TINY[5:], "--summary", "--out", str(tmp_path / "s")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "bireal_18 stats" in proc.stdout and "stage1_conv1" in proc.stdout
    quiet = subprocess.run([EDGEBNN, "eval", str(run)], capture_output=True, text=True)
    loud = subprocess.run([EDGEBNN, "eval", str(run), "--verbose"], capture_output=True, text=True)
    assert quiet.returncode == loud.returncode == 0 and quiet.stdout == loud.stdout
    assert "tensorflow/" not in quiet.stderr and "tensorflow/" in loud.stderr


def test_progress_is_whole_lines_when_stderr_is_not_a_terminal(monkeypatch):
    import io

    from edgebnn import progress

    log = io.StringIO()
    monkeypatch.setattr(progress, "QUARTERS_AFTER_S", 0.0)  # as if the bar ran long: its quarters are printed too
    bar = progress.progress_bar(range(8), desc="epoch 1/2", unit="batch", file=log)
    for _ in bar:
        bar.set_postfix(loss="0.5")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and [ln.split(" in ")[0] for ln in lines] == [
        "epoch 1/2: 2/8 batch (25%)", "epoch 1/2: 4/8 batch (50%)", "epoch 1/2: 6/8 batch (75%)",
        "epoch 1/2: 8/8 batch (100%)"]
    assert lines[-1].endswith("loss=0.5")
    monkeypatch.setattr(progress, "QUARTERS_AFTER_S", 3600.0)  # a short bar: its final line only
    short = io.StringIO()
    list(progress.progress_bar(range(3), desc="eval", unit="batch", file=short))
    assert short.getvalue().count("\n") == 1 and short.getvalue().startswith("eval: 3/3 batch (100%)")
    quiet = io.StringIO()
    assert list(progress.progress_bar(range(3), enable=False, file=quiet)) == [0, 1, 2] and not quiet.getvalue()
