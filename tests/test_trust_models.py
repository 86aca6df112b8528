"""Trust, third pass (issue 29): a model file runs no code, an HDF5 file reads nothing outside itself and nothing
past its size, nothing from a file reaches the terminal raw, a FIFO or a device is named before it is opened, and
the import path's last tracebacks are one line. Every hostile file is made here, tiny; each refusal is asserted as
one `error:` line, exit 2, and what did not happen (no marker file, nothing built)."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner

import edgebnn  # noqa: F401
from edgebnn import runs, torch_checkpoint
from edgebnn.cli import main
from edgebnn.errors import EdgebnnError, printable
from edgebnn.importing import importer, sources

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))
SYSTEM_PYTHON = "/usr/bin/python3"
MAKE_REFERENCE = Path(__file__).parent / "torch_reference" / "make_reference.py"
MEMORY_BOUND_KB = 512_000  # the peak RSS a refused import may reach (52-64 MB measured on the dev host)


def _cli(*args, timeout=60):
    return subprocess.run([EDGEBNN, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _measured(*args, timeout=60) -> tuple[subprocess.CompletedProcess, float, int]:
    """(the command line's result, its seconds, its peak RSS in KiB), run from a fresh Python whose only child it is
    (RUSAGE_CHILDREN then counts that process alone)."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
             "sys.stderr.write(p.stderr); sys.exit(p.returncode)")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", probe, EDGEBNN, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.monotonic() - start, int(proc.stdout or 0)


# ------------------------------------------------------------------------------------- no code from a model file
@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A model whose Lambda layer creates ``MARKER`` when it runs, saved as .keras, as Keras HDF5 (.h5, and the same
    bytes named .keras) and as a SavedModel; each shown to run its code when Keras loads it the unsafe way."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("hostile")
    marker = root / "MARKER"
    code = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Lambda(code)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(4, 3)(x))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x))
    files = {"keras": root / "lambda.keras", "h5": root / "lambda.h5", "savedmodel": root / "lambda_savedmodel",
             "h5 named .keras": root / "h5-inside.keras"}
    model.save(files["keras"])
    model.save(files["h5"])
    model.save(files["savedmodel"], save_format="tf")
    files["h5 named .keras"].write_bytes(files["h5"].read_bytes())
    for kind, path in files.items():  # the files are hostile: Keras' own loader runs their code
        marker.unlink(missing_ok=True)
        try:
            tf.keras.models.load_model(path, safe_mode=False)
        except Exception:  # whatever the loader says after the code ran
            pass
        assert marker.exists(), f"the {kind} file's Lambda did not run under Keras' unsafe load"
    marker.unlink()
    return files, marker


def test_safe_mode_refuses_a_lambda_keras_file_but_not_h5_or_savedmodel(hostile):
    """Why .h5 and SavedModel are refused: tf-keras 2.16's safe mode guards only the .keras format."""
    import tensorflow as tf

    files, marker = hostile
    with pytest.raises(ValueError, match="lambda"):
        tf.keras.models.load_model(files["keras"], safe_mode=True)
    assert not marker.exists()
    for kind in ("h5", "savedmodel"):
        tf.keras.models.load_model(files[kind], safe_mode=True)
        assert marker.exists(), kind
        marker.unlink()


@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel", "h5 named .keras"])
def test_no_command_runs_code_from_a_model_file(hostile, kind, tmp_path):
    from profile_fixtures import tiny_tflite

    files, marker = hostile
    path = files[kind]
    why = {"keras": "holds a Lambda layer", "h5": "Keras HDF5 (.h5) model", "savedmodel": "SavedModel folder",
           "h5 named .keras": "Keras HDF5 (.h5) model"}[kind]
    commands = [["eval", path, "--dataset", "digits"], ["convert", path, "--out", tmp_path / "m.tflite"],
                ["verify", tiny_tflite(), "-d", "local", "--source", path],
                ["train", "sdbnn-resnet20", "--weights", path, "--out", tmp_path / "run", "--dataset", "digits"]]
    for args in commands:
        result = CliRunner().invoke(main, [str(a) for a in args])
        line = assert_one_error_line(result, why, str(path))
        assert not marker.exists(), (args, line)
    assert not (tmp_path / "m.tflite").exists() and not (tmp_path / "run" / runs.RUN_INFO).exists()


def _keras_config(source: Path, out: Path, edit) -> Path:
    """``source`` (a .keras zip) with its config.json changed by ``edit(config)``."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == runs.KERAS_CONFIG:
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    return out


def test_a_keras_config_naming_a_module_outside_keras_larq_and_edgebnn_is_refused(tmp_path):
    """Keras' safe mode imports any module a config names and returns any function in it: refused before."""
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2, activation="relu")])
    model.save(tmp_path / "plain.keras")
    assert runs.load_model(tmp_path / "plain.keras")[0].output_shape == (None, 2)  # a plain model loads

    def foreign(config):
        dense = config["config"]["layers"][-1]
        dense["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system",
                                         "registered_name": "function"}

    def tf_op(config):
        config["config"]["layers"][-1]["class_name"] = "TFOpLambda"

    for edit, needle in ((foreign, "names 'os'"), (tf_op, "holds a TFOpLambda layer")):
        path = _keras_config(tmp_path / "plain.keras", tmp_path / f"{edit.__name__}.keras", edit)
        with pytest.raises(EdgebnnError, match=needle):
            runs.load_model(path)


def test_a_keras_file_whose_weights_are_stored_in_another_file_is_refused(tmp_path):
    import zipfile

    import tensorflow as tf

    tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)]).save(tmp_path / "plain.keras")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8, dtype=np.float32).tobytes())
    with zipfile.ZipFile(tmp_path / "plain.keras") as src, zipfile.ZipFile(tmp_path / "leak.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == runs.KERAS_WEIGHTS:
                (tmp_path / "w.h5").write_bytes(data)
                with h5py.File(tmp_path / "w.h5", "r+") as f:
                    del f["layers/dense/vars/0"]
                    f["layers/dense/vars"].create_dataset("0", shape=(4, 2), dtype="f4",
                                                          external=[(str(secret), 0, 32)])
                data = (tmp_path / "w.h5").read_bytes()
            dst.writestr(item, data)
    leaked = tf.keras.models.load_model(tmp_path / "leak.keras", safe_mode=True).layers[-1].kernel.numpy()
    assert leaked.ravel().tolist() == list(range(8))  # Keras reads the other file's bytes as the kernel
    with pytest.raises(EdgebnnError, match="keeps its data in another file"):
        runs.load_model(tmp_path / "leak.keras")


def test_a_run_folder_naming_a_model_file_elsewhere_is_refused(tmp_path):
    (tmp_path / runs.FINAL_MODEL).write_bytes(b"x")
    for saved in ({"best": {"file": "../../etc/passwd"}}, {"best": {"file": "/tmp/x.keras"}}, {"best": {"file": 5}},
                  {"best": "model.keras"}, ["best"]):
        runs.write_info(tmp_path, {"checkpoints": saved})
        with pytest.raises(EdgebnnError, match="the run folder is corrupt"):
            runs.model_file(tmp_path)


# --------------------------------------------------------------------------- HDF5: nothing outside, nothing past
def _zoo_like(path: Path, make_kernel) -> Path:
    """A Keras HDF5 weight file of one layer ``dense`` whose kernel ``make_kernel(group)`` makes."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        group = f.create_group("dense")
        group.attrs["weight_names"] = [b"dense/kernel:0"]
        make_kernel(group)
    return path


def test_hdf5_external_storage_links_and_virtual_datasets_are_never_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 4)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["kernel"] = np.arange(12, dtype=np.float32)
    layout = h5py.VirtualLayout(shape=(12,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "kernel", shape=(12,))
    cases = {
        "external storage": (lambda g: g.create_dataset("kernel:0", shape=(len(secret.read_bytes()),), dtype="u1",
                                                        external=[(str(secret), 0, h5py.h5f.UNLIMITED)]),
                             "keeps its data in another file"),
        "external link": (lambda g: g.__setitem__("kernel:0", h5py.ExternalLink(str(other), "kernel")),
                          "is an external link"),
        "soft link": (lambda g: (g.create_dataset("real", data=np.ones(3, "f4")),
                                 g.__setitem__("kernel:0", h5py.SoftLink("/dense/real"))), "is a soft link"),
        "virtual dataset": (lambda g: g.create_virtual_dataset("kernel:0", layout), "is virtual"),
        "strings": (lambda g: g.create_dataset("kernel:0", data=[b"abc"], dtype=h5py.string_dtype()), "not numbers"),
    }
    for name, (make, needle) in cases.items():
        path = _zoo_like(tmp_path / f"{name.replace(' ', '_')}.h5", make)
        with pytest.raises(EdgebnnError, match=needle) as err:
            sources.read(path)
        assert "root:x" not in str(err.value), name
        assert_one_error_line(CliRunner().invoke(main, ["import", str(path)]), needle)


def test_a_size_bomb_h5_is_refused_before_reading_in_bounded_memory(tmp_path):
    """40000 x 40000 float32 declared (6.4 GB), no chunk written: a file of a few KB."""
    bomb = _zoo_like(tmp_path / "bomb.h5", lambda g: g.create_dataset("kernel:0", shape=(40000, 40000), dtype="f4",
                                                                        chunks=(1000, 1000)))
    assert bomb.stat().st_size < 1 << 20
    proc, seconds, peak_kb = _measured("import", bomb)
    assert_one_error_line(proc, "declare more than", "(40000, 40000)")
    assert seconds < 30 and peak_kb < MEMORY_BOUND_KB, (seconds, peak_kb)


def test_weight_names_that_read_one_dataset_over_and_over_are_refused(tmp_path):
    path = tmp_path / "alias.h5"
    with h5py.File(path, "w") as f:
        f["big"] = np.ones(25_000, "f4")  # 100 KB, named by 1000 layers: 100 MB read from a file of 100 KB
        f.attrs["layer_names"] = [f"l{i}".encode() for i in range(1000)]
        for i in range(1000):
            f.create_group(f"l{i}").attrs["weight_names"] = [b"/big"]
    with pytest.raises(EdgebnnError, match="read more than 4 float32 bytes per byte of the file"):
        sources.read(path)


# ------------------------------------------------------------------------- FIFOs, devices: named, never opened
def test_import_of_a_fifo_a_device_or_a_symlink_to_one_is_one_line_in_bounded_memory(tmp_path):
    fifo = tmp_path / "fifo.pth.tar"
    os.mkfifo(fifo)
    link = tmp_path / "zero.pth.tar"
    link.symlink_to("/dev/zero")
    for path in (fifo, Path("/dev/zero"), link):
        proc, seconds, peak_kb = _measured("import", path, timeout=60)
        assert_one_error_line(proc, str(path), "is not a regular file (a FIFO, socket or device)", only=True)
        assert seconds < 30 and peak_kb < MEMORY_BOUND_KB, (path, seconds, peak_kb)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    sparse = tmp_path / "sparse.pth.tar"  # 2 GiB + 1 of nothing: refused by its size, never read
    with open(sparse, "wb") as f:
        f.truncate(torch_checkpoint.FILE_LIMIT + 1)
    with pytest.raises(EdgebnnError, match=f"is {torch_checkpoint.FILE_LIMIT + 1} bytes, more than"):
        sources.read(sparse)


# ------------------------------------------------------------------------------- nothing raw to the terminal
def test_printable_escapes_every_control_character_and_keeps_the_rest():
    assert printable("a\x1b[2J\x1b[Hb") == "a\\x1b[2J\\x1b[Hb"
    assert printable("k\r\nFAKE: all good\x07") == "k\\r\\nFAKE: all good\\x07"
    assert printable("\x9b31m \x7f \u202eevil \t é ü 中") == "\\x9b31m \\x7f \\u202eevil \t é ü 中"


def test_checkpoint_key_names_with_control_characters_print_escaped_on_one_line(tmp_path):
    path = tmp_path / "keys.h5"
    with h5py.File(path, "w") as f:
        names = ["\x1b[2J\x1b[H", "x\r\nFAKE: all good\x1b]0;title\x07"]
        f.attrs["layer_names"] = [n.encode() for n in names]
        for name in names:
            group = f.create_group(name)
            group.attrs["weight_names"] = [b"k:0"]
            group["k:0"] = np.ones(2, "f4")
    proc = _cli("import", path)
    line = assert_one_error_line(proc, "\\x1b[2J\\x1b[H", "x\\r\\nFAKE: all good\\x1b]0;title\\x07", only=True)
    assert not any(c in proc.stderr + proc.stdout for c in "\x1b\r\x07") and "keys of no known" in line


# ---------------------------------------------------------------------------- the import path's tracebacks
def _reference(tmp_path: Path) -> Path:
    """A small official SD-BNN CIFAR checkpoint (Debian's python3-torch writes it; its best_prec1 then 10**400)."""
    out = tmp_path / "ref"
    proc = subprocess.run([SYSTEM_PYTHON, str(MAKE_REFERENCE), "sdbnn-resnet18", "--width", "0.125", "--out",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = out / "checkpoint.pth.tar"
    edit = ("import sys, torch; p = sys.argv[1]; c = torch.load(p); c['best_prec1'] = 10**400; "
            "c['arch'] = 'x' * 1000; torch.save(c, p)")
    proc = subprocess.run([SYSTEM_PYTHON, "-c", edit, str(ckpt)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return ckpt


def test_a_huge_best_prec1_is_no_accuracy_and_a_read_only_out_is_refused_before_building(tmp_path, monkeypatch):
    assert sources.finite(10**400) is None and sources.finite(float("nan")) is None and sources.finite(True) is None
    assert importer._plain_meta({"a": 10**400, "b": 2**63, "c": float("inf"), "d": 7, "e": "y" * 500}) == \
        {"d": 7, "e": "y" * importer.META_TEXT_LIMIT}
    ckpt = _reference(tmp_path)
    built = []
    real_build = importer.build_and_fill
    monkeypatch.setattr(importer, "build_and_fill", lambda *a: built.append(1) or real_build(*a))
    for out in ("/proc/edgebnn-import-test", "/proc/self/edgebnn-import-test"):
        line = assert_one_error_line(CliRunner().invoke(main, ["import", str(ckpt), "--out", out]), "--out")
        assert "cannot write" in line or "is a file" in line
    assert not built  # refused before the model was built
    result = CliRunner().invoke(main, ["import", str(ckpt), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "the checkpoint reports no accuracy" in result.output and built
    info = runs.read_info(tmp_path / "run")
    assert info["source"]["checkpoint_top1"] is None and "best_prec1" not in info["source"]["meta"]
    assert len(info["source"]["meta"]["arch"]) == importer.META_TEXT_LIMIT


def test_a_read_only_folder_is_refused_before_building(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes in a read-only folder (the /proc case above covers root)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setattr(importer, "build_and_fill", lambda *a: pytest.fail("built before the check"))
    monkeypatch.setattr(sources, "read", lambda path: pytest.fail("read before the check"))
    assert_one_error_line(CliRunner().invoke(main, ["import", str(tmp_path / "x"), "--out", str(ro / "run")]),
                          "cannot write")


def test_random_bytes_in_the_checkpoint_state_file_are_one_line_on_resume(tmp_path):
    from edgebnn import training

    run = tmp_path / "run"
    (run / runs.CHECKPOINTS / "last").mkdir(parents=True)
    runs.write_info(run, {"epochs_done": 1})
    state = run / runs.CHECKPOINTS / "last" / "checkpoint"
    state.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    with pytest.raises(EdgebnnError, match="checkpoint state file .* is not text"):
        training.resume_point(run)
    state.unlink()
    os.mkfifo(state)
    with pytest.raises(EdgebnnError, match="not a regular file"):
        training.resume_point(run)
