"""Training beyond one device: MirroredStrategy on two logical CPUs, MultiWorkerMirroredStrategy with two
worker processes on 127.0.0.1 (both slow: each trains one short epoch of the digits recipe)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import edgebnn  # noqa: F401
from edgebnn import runs

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))
ARGS = ["bireal-18", "--dataset", "digits", "--epochs", "1", "--set", "input_size=16", "--quiet"]


def _rows(run_dir):
    from edgebnn.training import read_metrics

    return read_metrics(run_dir)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_with_synchronized_batchnorm(tmp_path):
    out = tmp_path / "mirrored"
    code = (
        "import edgebnn, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from edgebnn.training import train\n"
        f"train('bireal-18', dataset='digits', epochs=1, out={str(out)!r}, strategy='mirrored',\n"
        "      sets=['input_size=16', 'sync_batchnorm=true'], progress=False, summary=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = runs.read_info(out)
    assert info["strategy"] == "mirrored" and info["replicas"] == 2 and info["status"] == "done"
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [1]
    assert float(rows[0]["val_top1"]) > 0.5  # one epoch of the digits recipe: about 0.77 on one device
    from edgebnn.evaluate import evaluate

    result = evaluate(out)
    assert result["n"] == 359 and result["top1"] == pytest.approx(float(rows[0]["val_top1"]), abs=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multiworker_with_two_worker_processes_on_localhost(tmp_path):
    out = tmp_path / "multi"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = []
    for index in (1, 0):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                    "index": index}})}
        procs.append(subprocess.Popen([EDGEBNN, "train", *ARGS, "--strategy", "multiworker", "--out", str(out)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    info = runs.read_info(out)
    assert info["strategy"] == "multiworker" and info["replicas"] == 2 and info["status"] == "done"
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [1] and float(rows[0]["val_top1"]) > 0.5
    assert (out / "model.keras").is_file()
    assert "epoch 1/1" in results[1][0] and "epoch 1/1" not in results[0][0]  # only the chief reports


def test_multiworker_needs_tf_config():
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([EDGEBNN, "train", *ARGS, "--strategy", "multiworker"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1].startswith("error: --strategy multiworker needs "
                                                                             "TF_CONFIG")
