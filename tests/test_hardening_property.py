"""Property: no byte string given as a .tflite (to `edgebnn profile` and to read_ops), as a recipe or as a
devices.toml ends in a traceback or a crash; each is accepted or refused with one `error:` line and exit 2.

Bounded (a few hundred examples, well under a minute): arbitrary bytes, and the real converted model, recipe
and devices file with bytes flipped, cut or spliced in, which reach further past the first checks."""

import json
import tomllib

import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profile_fixtures import tiny_tflite

import edgebnn  # noqa: F401
from edgebnn import recipe as recipes
from edgebnn.cli import main
from edgebnn.devices import config as devices
from edgebnn.errors import EdgebnnError

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
RECIPE = recipes.text("bireal-18").encode()
DEVICES = b"""[devices.pi4]
ssh = "ssh://pi@raspberrypi.local:2222"
runner = "~/bin/lce_benchmark_model"
target = "arm64"
ssh_options = ["ConnectTimeout=5"]
notes = "Pi 4B"

[[device]]
name = "v6"
ssh = "ssh://u@[::1]:22"
"""


def _mutated(base: bytes):
    """``base`` with a few bytes flipped, a cut, or bytes spliced in."""
    flips = st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(1, 255)), min_size=1, max_size=4)

    def flip(changes):
        b = bytearray(base)
        for i, x in changes:
            b[i] ^= x
        return bytes(b)

    return st.one_of(flips.map(flip), st.integers(0, len(base)).map(lambda n: base[:n]),
                     st.tuples(st.integers(0, len(base)), st.binary(max_size=16)).map(
                         lambda t: base[:t[0]] + t[1] + base[t[0]:]))


def _one_line_or_ok(result):
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if result.exit_code != 0:
        assert_one_error_line(result)


@pytest.fixture(scope="module")
def model_bytes():
    return tiny_tflite().read_bytes()


@pytest.mark.slow
def test_no_tflite_bytes_crash_profile_or_read_ops(model_bytes, tmp_path_factory):
    from edgebnn.tflite.describe import read_ops

    folder = tmp_path_factory.mktemp("tflite")
    seen = {"refused": 0, "read": 0}

    @settings(max_examples=60, **SETTINGS)
    @given(st.one_of(st.binary(max_size=512), st.binary(max_size=64).map(lambda b: b[:4] + b"TFL3" + b[4:]),
                     _mutated(model_bytes)))
    def check(data):
        try:
            ops = read_ops(data)
            assert isinstance(ops, list)
            seen["read"] += 1
        except EdgebnnError as err:
            assert "\n" not in str(err)
            seen["refused"] += 1
        path = folder / "m.tflite"
        path.write_bytes(data)
        _one_line_or_ok(CliRunner().invoke(main, ["profile", str(path), "--db", str(folder / "r.db"), "--runs", "2",
                                                  "--warmup", "0", "--force", "--timeout", "60"]))

    check()
    assert seen["refused"] and seen["read"]  # both sides of the check were reached


def test_no_recipe_bytes_give_a_traceback(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe")

    @settings(max_examples=150, **SETTINGS)
    @given(st.one_of(st.binary(max_size=256), _mutated(RECIPE)))
    def check(data):
        path = folder / "r.toml"
        path.write_bytes(data)
        try:
            recipe = recipes.load(str(path), dataset="digits")
            assert recipe["steps"] and all(s["epochs"] >= 1 for s in recipe["steps"])
        except EdgebnnError as err:
            assert "\n" not in str(err).strip()

    check()


_VALUES = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), st.booleans(), st.text(max_size=12),
                    st.lists(st.one_of(st.integers(), st.text(max_size=6)), max_size=3))


def test_no_recipe_values_give_a_traceback():
    keys = list(recipes.TOP_KEYS) + ["junk"]
    step_keys = list(recipes.STEP_KEYS)

    @settings(max_examples=200, **SETTINGS)
    @given(st.dictionaries(st.sampled_from(keys), _VALUES, max_size=6),
           st.lists(st.dictionaries(st.sampled_from(step_keys), _VALUES, max_size=8), max_size=2),
           st.dictionaries(st.sampled_from(["width", "input_shape", "num_classes"]), _VALUES, max_size=3))
    def check(top, steps, arch):
        raw = {"model": "bireal-18", "steps": steps, "arch": arch, **top}
        try:
            recipes.validate(raw, "r.toml")
        except EdgebnnError as err:
            assert "\n" not in str(err)

    check()


def test_no_devices_file_bytes_give_a_traceback(tmp_path_factory):
    folder = tmp_path_factory.mktemp("devices")
    runner = CliRunner()

    def toml_value(v):
        return json.dumps(v) if not isinstance(v, float) or v == v and abs(v) != float("inf") else "nan"

    tables = st.dictionaries(st.sampled_from(["ssh", "host", "runner", "target", "ssh_config", "ssh_options",
                                              "notes", "name", "port"]), _VALUES, max_size=5)
    texts = tables.map(lambda t: "[devices.b]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in t.items()))

    @settings(max_examples=150, **SETTINGS)
    @given(st.one_of(st.binary(max_size=256), _mutated(DEVICES), texts.map(str.encode)))
    def check(data):
        path = folder / "devices.toml"
        path.write_bytes(data)
        try:
            tomllib.loads(data.decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            pass
        try:
            known = devices.load(path)
            for name in known:
                devices.resolve(name, path).ssh_target()
        except EdgebnnError as err:
            assert "\n" not in str(err)
        _one_line_or_ok(runner.invoke(main, ["devices", "list", "--devices-file", str(path)]))

    check()
