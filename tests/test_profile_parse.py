"""The lce_benchmark_model output parser: both documented layouts, and no text makes it crash."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgebnn  # noqa: F401
from edgebnn.devices.parse import op_totals, parse
from edgebnn.errors import EdgebnnError

HEAD = """STARTING!
Graph: [model.tflite]
Num threads: [1]
The input model file size (MB): 3.3512
Initialized session in 1.471ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=16 first=41707 curr=31870 min=31722 max=41707 avg=32491.4 std=2395

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=31929 curr=31278 min=31138 max=31929 avg=31420.6 std=260

Inference timings in us: Init: 1471, First inference: 41707, Warmup (avg): 32491.4, Inference (avg): 31420.6
Memory footprint delta from the start of the tool (MB): init=4.5 overall=9.25
Overall peak memory footprint (MB) via periodic monitoring: 12.5
"""

# Older builds: a [start] column, names without a node index, tab-separated.
OLD_OPS = (
    "Profiling Info for Benchmark Initialization:\n"
    "============================== Run Order ==============================\n"
    "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]"
    "\t[times called]\t[Name]\n"
    "\t         AllocateTensors\t            0.000\t    0.120\t    0.120\t100.000%\t100.000%\t     0.000"
    "\t        1\tAllocateTensors/0\n"
    "\n"
    "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
    "============================== Run Order ==============================\n"
    "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]"
    "\t[times called]\t[Name]\n"
    "\t             LceQuantize\t            0.000\t    0.500\t    0.400\t 20.000%\t 20.000%\t     0.000"
    "\t        1\t[model/quant]\n"
    "\t              LceBconv2d\t            0.400\t    1.100\t    1.000\t 50.000%\t 70.000%\t     0.000"
    "\t        1\t[model/bconv1]\n"
    "\t              LceBconv2d\t            1.400\t    0.300\t    0.250\t 12.500%\t 82.500%\t     0.000"
    "\t        1\t[model/bconv2]\n"
    "\t                 CONV_2D\t            1.650\t    0.400\t    0.350\t 17.500%\t100.000%\t     0.000"
    "\t        1\t[model/conv]\n"
    "\n"
    "============================== Summary by node type ==============================\n"
    "\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]\n"
    "\t              LceBconv2d\t        2\t     1.250\t    62.500%\t    62.500%\t     0.000\t        2\n"
    "\t             LceQuantize\t        1\t     0.400\t    20.000%\t    82.500%\t     0.000\t        1\n"
    "\t                 CONV_2D\t        1\t     0.350\t    17.500%\t   100.000%\t     0.000\t        1\n"
    "\n"
    "Timings (microseconds): count=50 first=2300 curr=2000 min=1990 max=2400 avg=2000 std=30\n"
    "Memory (bytes): count=0\n"
    "4 nodes observed\n"
)

# Recent builds: no [start], names end in :<node index>, space-aligned, node types may hold spaces.
NEW_OPS = """INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
                     [node type]          [first]        [avg ms]            [%]          [cdf%]          [mem KB]        [times called]  [Name]
                     LceQuantize            0.500           0.400        20.000%         20.000%             0.000                1       [model/quant]:0
                      LceBconv2d            1.100           1.000        50.000%         70.000%             0.000                1       [model/bconv1]:1
                      LceBconv2d            0.300           0.250        12.500%         82.500%             0.000                1       [model/bconv2]:2
    Convolution (NHWC, F32) GEMM            0.400           0.350        17.500%        100.000%             0.000                1       Delegate/Convolution (NHWC, F32) GEMM:3

============================== Top by Computation Time ==============================
                     [node type]          [first]        [avg ms]            [%]          [cdf%]          [mem KB]        [times called]  [Name]
                      LceBconv2d            1.100           1.000        50.000%         50.000%             0.000                1       [model/bconv1]:1

Number of nodes executed: 4
============================== Summary by node type ==============================
                     [Node type]          [count]         [avg ms]          [avg %]         [cdf %]       [mem KB]        [times called]
                      LceBconv2d                2            1.250          62.500%         62.500%          0.000                2
                     LceQuantize                1            0.400          20.000%         82.500%          0.000                1
    Convolution (NHWC, F32) GEMM                1            0.350          17.500%        100.000%          0.000                1

Timings (microseconds): count=50 first=2300 curr=2000 min=1990 max=2400 avg=2000 std=30
Memory (bytes): count=0
4 nodes observed
"""  # noqa: E501


def _info(text):
    return "".join(("INFO: " + ln if ln.strip() and not ln.startswith(("\t", " ", "=")) else ln)
                   for ln in text.splitlines(keepends=True))


@pytest.mark.parametrize("prefixed", [False, True])
def test_headline_figures(prefixed):
    text = _info(HEAD) if prefixed else HEAD
    out = parse(text)
    assert out["model_size_mb"] == 3.3512 and out["init_ms"] == 1.471
    assert out["warmup"] == {"count": 16, "first_us": 41707, "curr_us": 31870, "min_us": 31722, "max_us": 41707,
                             "avg_us": 32491.4, "std_us": 2395}
    assert out["runs"]["count"] == 50 and out["runs"]["avg_us"] == 31420.6 and out["runs"]["min_us"] == 31138
    assert out["timings_us"]["Inference (avg)"] == 31420.6 and out["timings_us"]["Init"] == 1471
    assert out["memory_mb"] == {"init": 4.5, "overall": 9.25, "peak": 12.5}
    assert out["ops"] == [] and out["op_summary"] == []


def test_glog_prefix():
    text = "".join(f"2026-11-23 10:00:00.123456: I tensorflow/lite/tools/benchmark/x.cc:12] {ln}\n"
                   for ln in HEAD.splitlines())
    assert parse(text)["runs"]["avg_us"] == 31420.6


@pytest.mark.parametrize("layout", ["old", "new"])
def test_op_tables_both_layouts(layout):
    text = HEAD + (OLD_OPS if layout == "old" else NEW_OPS)
    out = parse(text)
    ops = out["ops"]
    assert [op["node_type"] for op in ops][:3] == ["LceQuantize", "LceBconv2d", "LceBconv2d"]
    assert [op["avg_ms"] for op in ops] == [0.4, 1.0, 0.25, 0.35]
    assert ops[1]["pct"] == 50.0 and ops[1]["first_ms"] == 1.1 and ops[1]["times_called"] == 1
    assert ops[0]["name"] == "model/quant"
    if layout == "old":
        assert ops[2]["start_ms"] == 1.4 and ops[2]["index"] is None
    else:
        assert "start_ms" not in ops[2] and ops[2]["index"] == 2
        assert ops[3]["node_type"] == "Convolution (NHWC, F32) GEMM" and ops[3]["index"] == 3
        assert ops[3]["name"] == "Delegate/Convolution (NHWC, F32) GEMM"
    # The init-phase table and the Top-by table are not per-op rows of the regular runs.
    assert len(ops) == 4
    summary = {r["node_type"]: r for r in out["op_summary"]}
    assert summary["LceBconv2d"]["count"] == 2 and summary["LceBconv2d"]["avg_ms"] == 1.25
    # "Timings (microseconds): count=..." inside the op section is not a third count line.
    assert out["runs"]["count"] == 50 and out["runs"]["avg_us"] == 31420.6
    totals = {t["node_type"]: t for t in op_totals(ops)}
    assert totals["LceBconv2d"]["nodes"] == 2 and totals["LceBconv2d"]["avg_ms"] == pytest.approx(1.25)
    assert totals["LceBconv2d"]["kind"] == "binary" and totals["LceQuantize"]["kind"] == "binary"
    assert totals["LceBconv2d"]["pct"] == pytest.approx(62.5)
    assert sum(t["pct"] for t in totals.values()) == pytest.approx(100.0)
    float_type = "CONV_2D" if layout == "old" else "Convolution (NHWC, F32) GEMM"
    assert totals[float_type]["kind"] == "float"


def test_runner_percentiles_line():
    out = parse(HEAD + "Percentiles in us (edgebnn runner): median=31400.5 p90=31700\n")
    assert out["percentiles_us"] == {"median": 31400.5, "p90": 31700.0}


def test_only_warmup_says_so():
    text = HEAD.split("Running benchmark for at least 50")[0]
    with pytest.raises(EdgebnnError, match="measured runs.*only the warm-up"):
        parse(text)


def test_crash_output_names_what_is_missing():
    with pytest.raises(EdgebnnError, match=r"no timing line 'count=N.*3 line.*Segmentation fault"):
        parse("STARTING!\nGraph: [m.tflite]\nSegmentation fault (core dumped)\n")


def test_empty_output():
    with pytest.raises(EdgebnnError, match="printed 0 line"):
        parse("")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=60),
    st.sampled_from(HEAD.splitlines() + OLD_OPS.splitlines() + NEW_OPS.splitlines()),
    st.builds(lambda a, b: f"count={a} min={b} max={b} avg={b}", st.integers(-3, 99), st.integers(0, 10**6)),
), max_size=40))
def test_any_text_parses_or_says_what_is_missing(lines):
    text = "\n".join(lines)
    try:
        out = parse(text)
    except EdgebnnError as err:
        assert "benchmark output" in str(err) and "\n" not in str(err)
        return
    assert out["runs"]["count"] > 0 and isinstance(out["runs"]["avg_us"], float)
    assert all(isinstance(op["avg_ms"], float) for op in out["ops"] if "avg_ms" in op)


def test_op_table_without_section_header_is_the_regular_runs():
    body = NEW_OPS.split("\n", 1)[1]  # drop the "Operator-wise Profiling Info ..." line
    out = parse(HEAD + body)
    assert [op["index"] for op in out["ops"]] == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------ real runner output
# Verbatim output of LCE 0.16's aarch64 lce_benchmark_model (under qemu): ../shared/lce/samples beside the project.
SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "lce" / "samples"
SAMPLE_MODELS = ["BiRealNet", "QuickNet", "small_bnn_32x32"]


def _sample(name: str, kind: str) -> str:
    path = SAMPLES / f"{name}.{kind}.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared LCE runner samples are not beside this checkout")
    return path.read_text()


def assert_totals_match_summary(parsed: dict) -> None:
    """op_totals of the Run Order rows equal the runner's own "Summary by node type" table, type by type, within
    1% (or the table's 3-decimal printing, 0.005 ms), and the shares within 0.1 percentage point."""
    summary = {r["node_type"]: r for r in parsed["op_summary"]}
    totals = {t["node_type"]: t for t in op_totals(parsed["ops"])}
    assert summary and totals.keys() == summary.keys()
    for node_type, row in summary.items():
        t = totals[node_type]
        assert (t["nodes"], t["calls"]) == (row["count"], row["times_called"]), node_type
        assert t["avg_ms"] == pytest.approx(row["avg_ms"], rel=0.01, abs=0.005), node_type
        assert t["pct"] == pytest.approx(row["pct"], abs=0.1), node_type
    whole = sum(t["avg_ms"] for t in totals.values())
    assert whole == pytest.approx(sum(r["avg_ms"] for r in summary.values()), rel=0.01)


@pytest.mark.qemu
@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_op_totals_equal_the_runners_summary_on_real_output(name):
    assert_totals_match_summary(parse(_sample(name, "op_profile")))


@pytest.mark.qemu
@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_op_totals_add_up_to_the_measured_inference(name):
    out = parse(_sample(name, "op_profile"))
    whole = sum(t["avg_ms"] for t in op_totals(out["ops"]))
    assert whole == pytest.approx(out["runs"]["avg_us"] / 1000, rel=0.01)


@pytest.mark.qemu
def test_a_delegate_row_standing_for_16_calls_counts_16_times():
    out = parse(_sample("QuickNet", "op_profile"))
    (add,) = [op for op in out["ops"] if op["node_type"] == "Add (ND, F32)"]
    assert add["times_called"] == 16 and add["avg_ms"] == 3.5 and add["name"] == "Delegate/Add (ND, F32)"
    totals = {t["node_type"]: t for t in op_totals(out["ops"])}
    assert totals["Add (ND, F32)"]["avg_ms"] == pytest.approx(56.0)  # the summary prints 56.003
    assert totals["Add (ND, F32)"]["pct"] == pytest.approx(9.807, abs=0.01)
    # Counted once, the 16 adds would be 0.6% of the time instead of 9.8%.
    assert totals["LceBconv2d"]["calls"] == 16 and totals["Convolution (NHWC, F32) GEMM"]["calls"] == 4


@pytest.mark.qemu
def test_real_output_without_op_profiling():
    out = parse(_sample("small_bnn_32x32", "run"))
    assert out["runs"] == {"count": 39, "first_us": 25592, "curr_us": 26332, "min_us": 24667, "max_us": 28308,
                           "avg_us": 25754.1, "std_us": 698}
    assert out["warmup"]["count"] == 20 and out["model_size_mb"] == 0.050452 and out["init_ms"] == 41.543
    assert out["memory_mb"] == {"init": 3.48828, "overall": 6.66406} and out["ops"] == []


@pytest.mark.qemu
def test_real_output_init_tables_are_not_per_op_rows():
    out = parse(_sample("small_bnn_32x32", "op_profile"))
    assert len(out["ops"]) == 12 and not any(op["node_type"] == "AllocateTensors" for op in out["ops"])
    assert out["runs"]["count"] == 41 and out["runs"]["avg_us"] == 24709.1
