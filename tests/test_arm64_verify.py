"""The proof on the aarch64 kernels: check samples through LCE's real aarch64 lce_benchmark_model (under qemu, on the
emulated device qemu:aarch64 and over SSH on the aarch64 test board) against Keras, for every binary family."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from arm64_helpers import aarch64_runner
from cli_checks import assert_one_error_line
from click.testing import CliRunner
from model_helpers import converted_variant, randomise_parameters

import edgebnn  # noqa: F401
from edgebnn import archs, tflite
from edgebnn import conversion as conv
from edgebnn.archs import stats
from edgebnn.cli import main
from edgebnn.conversion import on_device
from edgebnn.devices.execute import open_runner

pytestmark = pytest.mark.slow

BINARY_VARIANTS = [n for n in archs.names() if archs.get(n).binary]


def _qemu_ready():
    if not shutil.which("qemu-aarch64"):
        pytest.skip("qemu-aarch64 (Debian's qemu-user) is not installed: make arm64-tools")
    return aarch64_runner()


@pytest.fixture(scope="module")
def digits_100():
    from edgebnn import data

    return data.sample("digits", 100, input_size=32)


@pytest.mark.qemu
@pytest.mark.parametrize("name", BINARY_VARIANTS)
def test_every_binary_variant_answers_like_keras_on_the_aarch64_kernels(name, digits_100, tmp_path):
    """Width 1/8, 32x32x3, every non-kernel parameter moved off its init (seeded as test_archs' host sweep); the 100
    digits samples go through the aarch64 runner in one batch (sample 0 also alone): the same top-1 as Keras on all
    100, and any sample beyond 1e-3 of the output scale explained by a sign tie."""
    runner = _qemu_ready()
    model, flatbuffer = converted_variant(name)
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(flatbuffer)
    x, y = digits_100
    with open_runner("qemu:aarch64", runner=str(runner)) as host:
        assert host.emulated
        out, how = on_device.device_outputs(host, path, x)
    # Sample 0 alone gives its row of the batch up to float summation order (the GEMMs block a batch differently).
    assert how["batch"] == 100 and how["invocations"] == 2
    assert how["batch1_max_abs_diff"] <= 1e-5 * np.abs(out).max()
    layers = stats.binary_conv_layers(model)
    check = conv.compare(conv.keras_outputs(model, x), out, y, conv.sign_margins(model, layers, x))
    assert check["samples"] == 100 and check["top1_agreement"] == 1.0
    assert check["unexplained"] == 0 and check["relative_diff_untied"] < 1e-3
    # The aarch64 kernels agree with LCE's x86 interpreter as closely as either agrees with Keras.
    assert np.abs(out - conv.run_tflite(flatbuffer, x)).max() <= max(1e-4 * check["output_scale"],
                                                                     check["max_abs_diff"])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    tf.keras.utils.set_random_seed(7)
    model = randomise_parameters(archs.build("reactnet-18", input_shape=(32, 32, 3), num_classes=10, width=0.125),
                                 seed=3)
    model.save(folder / "reactnet.keras")
    return folder / "reactnet.keras"


@pytest.fixture(scope="module")
def qemu_runner():
    """The aarch64 runner, the test skipped without it or qemu-aarch64 (before any conversion is paid for)."""
    return _qemu_ready()


@pytest.fixture(scope="module")
def tiny_flatbuffer(tiny_model):
    """tiny_model converted on this host as the board test converts it (40 check samples), without a device proof:
    the verify tests' own flatbuffer, whatever ran before them."""
    out = tiny_model.with_name("reactnet-host.tflite")
    if not out.is_file():
        conv.convert(tiny_model, "arm64", output=out, check_samples=40)
    return out


@pytest.mark.root
@pytest.mark.qemu
def test_convert_verify_on_the_ssh_board_then_verify_the_file_on_qemu(tiny_model, arm64_board):
    runner = _qemu_ready()
    out = tiny_model.with_name("reactnet.tflite")
    before = arm64_board.workdirs()
    res = CliRunner().invoke(main, ["convert", str(tiny_model), "-o", str(out), "--check-samples", "40",
                                    "--verify-on", arm64_board.url, "--ssh-config", arm64_board.config,
                                    "--runner", str(runner)])
    assert res.exit_code == 0, res.output
    assert arm64_board.workdirs() == before  # nothing left in the board's /tmp
    assert f"proof on {arm64_board.url}" in res.output and "[emulated]" in res.output
    report = json.loads(tflite.sidecar_path(out).read_text())
    check = report["device_checks"][arm64_board.url]
    assert check["samples"] == 40 and check["top1_agreement"] == 1.0 and check["unexplained"] == 0
    assert check["emulated"] is True and check["runner"] == runner.name and "aarch64" in check["machine"]
    assert check["keras_top1"] == report["check"]["keras_top1"]

    res = CliRunner().invoke(main, ["verify", str(out), "-d", "qemu:aarch64", "--runner", str(runner),
                                    "--check-samples", "40", "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output[res.output.index("{"):])
    assert result["check"]["top1_agreement"] == 1.0 and result["check"]["device"] == "qemu:aarch64"
    assert result["source"] == str(tiny_model) and result["report_file"] == str(tflite.sidecar_path(out))
    both = json.loads(tflite.sidecar_path(out).read_text())["device_checks"]
    assert set(both) == {arm64_board.url, "qemu:aarch64"}  # the board's proof is kept
    assert both[arm64_board.url] == check


@pytest.mark.qemu
def test_verify_bad_input_is_one_line(qemu_runner, tiny_flatbuffer, tiny_model, tmp_path):
    runner = qemu_runner
    args = ["verify", str(tiny_flatbuffer), "-d"]
    assert_one_error_line(CliRunner().invoke(main, args + ["local"]), "runs no lce_benchmark_model")
    assert_one_error_line(CliRunner().invoke(main, args + ["qemu:aarch64"]), "needs a runner")
    assert_one_error_line(CliRunner().invoke(main, args + ["qemu:aarch64", "--runner", shutil.which("true")]),
                          "not an aarch64 Linux program")
    assert_one_error_line(CliRunner().invoke(main, ["verify", str(tmp_path / "no.tflite"), "-d", "qemu:aarch64"]),
                          "does not exist")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(conv.lce_flatbuffer(tf.keras.models.load_model(tiny_model, custom_objects=archs.custom_objects()),
                                         "arm")[0])
    assert_one_error_line(CliRunner().invoke(main, ["verify", str(bare), "-d", "qemu:aarch64", "--runner",
                                                    str(runner)]), "names no Keras model", "--source")
    assert_one_error_line(CliRunner().invoke(main, ["convert", str(tiny_model), "-o", str(tmp_path / "x.tflite"),
                                                    "--check-samples", "0", "--verify-on", "qemu:aarch64"]),
                          "--verify-on needs check samples")


def test_a_failed_device_proof_keeps_the_flatbuffer_and_its_host_proof(tiny_model, tmp_path):
    out = tmp_path / "kept.tflite"
    assert_one_error_line(CliRunner().invoke(main, ["convert", str(tiny_model), "-o", str(out), "--check-samples", "10",
                                                    "--verify-on", "qemu:aarch64", "--runner", shutil.which("true")]),
                          "not an aarch64 Linux program", f"{out} and its host proof are saved")
    report = json.loads(tflite.sidecar_path(out).read_text())
    assert out.is_file() and report["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert report["check"]["samples"] == 10 and report["check"]["top1_agreement"] == 1.0
    assert "not an aarch64 Linux program" in report["device_checks"]["qemu:aarch64"]["error"]


@pytest.mark.qemu
def test_verify_against_another_model_is_one_line_after_the_table(qemu_runner, tiny_flatbuffer, tmp_path):
    """The flatbuffer proved against a model it was not converted from (--source, another seed): samples differ
    with no sign tie (digits' flat backgrounds tie some), so verify prints its table and exits non-zero in one
    line."""
    runner = qemu_runner
    tf.keras.utils.set_random_seed(8)
    other = randomise_parameters(archs.build("reactnet-18", input_shape=(32, 32, 3), num_classes=10, width=0.125),
                                 seed=4)
    other.save(tmp_path / "other.keras")
    result = CliRunner().invoke(main, ["verify", str(tiny_flatbuffer), "-d", "qemu:aarch64", "--runner", str(runner),
                                       "--check-samples", "5", "--source", str(tmp_path / "other.keras")])
    assert_one_error_line(result, "does not give the Keras model's answers on qemu:aarch64: ",
                          " of 5 check samples differ")
    assert "top-1 agreement" in result.output  # the table came first
