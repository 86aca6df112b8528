"""The front door (edgebnn.api): the README's Python example runs as written, options are keywords only, the records
read back what the stages wrote, and a caller's mistake is one EdgebnnError line."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import edgebnn
from edgebnn import api, runs
from edgebnn.records import Conversion, Report, ReportRow, Result, Run

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    section = README.read_text().split("## In Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README's block, run as it is written in a fresh folder by a fresh interpreter."""
    folder = tmp_path_factory.mktemp("front_door")
    proc = subprocess.run([sys.executable, "-c", _readme_example()], cwd=folder, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, proc.stdout


@pytest.mark.slow
def test_the_readme_example_runs_the_whole_flow(example):
    folder, stdout = example
    assert re.fullmatch(r"\d+ binary convs, \d+\.\d\d ms on this host, top-1 \d+\.\d%\n", stdout), stdout
    assert runs.read_info(folder / "runs" / "bireal-18")["status"] == "done"
    assert (folder / "runs" / "bireal-18" / "model-arm64.tflite").is_file()
    assert (folder / "report" / "index.html").is_file()
    with sqlite3.connect(folder / "results.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1


@pytest.mark.slow
def test_records_read_back_what_the_stages_wrote(example):
    folder, _ = example
    run = Run.from_folder(folder / "runs" / "bireal-18")
    assert run.model == "bireal-18" and run.status == "done" and 0 <= run.val_top1 <= 1
    assert run.to_dict() == runs.read_info(run.folder)
    report_file = folder / "runs" / "bireal-18" / "model-arm64.tflite.json"
    written = json.loads(report_file.read_text())
    conversion = Conversion.from_dict(written)
    assert conversion.lce_bconv2d == conversion.binary_convs == written["conversion"]["binary_convs"] > 0
    assert conversion.flatbuffer.name == "model-arm64.tflite" and conversion.sha256 == written["sha256"]
    assert json.loads(json.dumps(conversion.to_dict())) == written  # serialises as the stage wrote it
    rows = json.loads((folder / "report" / "results.json").read_text())
    row = ReportRow.from_dict(rows[0])
    assert row.model == rows[0]["model"] and row.median_ms == rows[0]["median_ms"] and row.to_dict() == rows[0]


@pytest.mark.slow
def test_profile_and_report_return_typed_records(example, tmp_path):
    folder, _ = example
    flatbuffer = folder / "runs" / "bireal-18" / "model-arm64.tflite"
    results = edgebnn.profile([flatbuffer], devices=["local"], runs=3, warmup=1, db=tmp_path / "r.db")
    assert [type(r) for r in results] == [Result] and results[0].kind == "host" and results[0].threads == 1
    assert results[0].median_ms > 0 and results[0].to_dict()["model_sha256"] == results[0].model_sha256
    report = edgebnn.report(db=tmp_path / "r.db", runs_dirs=[folder / "runs"], out=tmp_path / "report")
    assert isinstance(report, Report) and report.index == tmp_path / "report" / "index.html"
    assert report.index.is_file() and all(p.is_file() for p in report.plots)
    assert report.rows[0].device == "local" and report.rows[0].val_top1 is not None


def test_the_front_door_is_the_api_and_takes_keywords_only():
    for name in edgebnn.FRONT_DOOR:
        assert getattr(edgebnn, name) is getattr(api, name)
    with pytest.raises(TypeError):
        edgebnn.convert("runs/x", "arm64")  # the target is a keyword
    with pytest.raises(TypeError):
        edgebnn.build("bireal-18", 64)


def test_build_gives_the_papers_model_and_its_twin():
    binary = edgebnn.build("bireal-18", input_size=32, num_classes=10, width=0.125)
    real = edgebnn.build("bireal-18", input_size=32, num_classes=10, width=0.125, real=True)
    assert binary.input_shape == (None, 32, 32, 3) and binary.output_shape == (None, 10)
    assert binary.count_params() == real.count_params()


def test_a_callers_mistake_is_one_edgebnn_error_line(tmp_path):
    with pytest.raises(edgebnn.EdgebnnError, match="unknown target") as err:
        edgebnn.convert(tmp_path, target="riscv")
    assert "\n" not in str(err.value)
    with pytest.raises(edgebnn.EdgebnnError) as err:
        edgebnn.build("no-such-model")
    assert "\n" not in str(err.value)
