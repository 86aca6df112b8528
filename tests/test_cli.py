"""The command-line group and the package import contract."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
        assert "Traceback" not in proc.stderr + proc.stdout


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
