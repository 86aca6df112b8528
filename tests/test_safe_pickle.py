"""The restricted unpickler: hostile pickles are refused before their payload runs (each payload is shown to be
live under plain pickle first), data and numpy arrays round-trip, truncated or garbage streams are one line; and
CIFAR-10's reader goes through it, from Python and from the command line."""

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_one_error_line

from edgebnn import data, safe_pickle
from edgebnn.errors import EdgebnnError

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))


class _Reduce:
    """An object whose pickle calls ``func(*args)`` on load, as a hostile file's would."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _touch_with_eval(marker: Path):
    return _Reduce(eval, f"open({str(marker)!r}, 'w').close()")


def _hostile(marker: Path) -> dict[str, bytes]:
    """Pickles that create ``marker`` when plain pickle loads them, one per way a pickle reaches code."""
    touch = f"touch {marker}"
    m = str(marker).encode()
    cifar = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"batch_label": b"x"}
    os_system = b"cos\nsystem\n(S'" + touch.encode() + b"'\ntR."
    return {
        "os.system via REDUCE, protocol 0": os_system,
        "posix.system via STACK_GLOBAL": pickle.dumps(_Reduce(os.system, touch), protocol=4),
        "builtins.eval": pickle.dumps(_touch_with_eval(marker), protocol=2),
        "builtins.exec, protocol 5": pickle.dumps(_Reduce(exec, f"open({str(marker)!r}, 'w').close()"), protocol=5),
        "subprocess.Popen": pickle.dumps(_Reduce(subprocess.Popen, ["touch", str(marker)]), protocol=3),
        "__reduce__ inside a dict value": pickle.dumps({b"labels": [0], b"x": _touch_with_eval(marker)}),
        "INST opcode": b"(S'touch " + m + b"'\nios\nsystem\n.",
        "OBJ opcode": b"\x80\x02(cos\nsystem\nX" + struct.pack("<I", len(touch)) + touch.encode() + b"o.",
        "NEWOBJ opcode":
            b"\x80\x02csubprocess\nPopen\n]X\x05\x00\x00\x00touchaX" + struct.pack("<I", len(m)) + m
            + b"a\x85\x81.",
        "a valid CIFAR dict after the payload": os_system[:-1] + pickle.POP + pickle.dumps(cifar, protocol=0),
    }


def _plain_load_creates_marker(blob: bytes, marker: Path) -> bool:
    code = "import pickle, sys\ntry:\n    pickle.loads(sys.stdin.buffer.read())\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=60, check=True)
    created = marker.exists()
    marker.unlink(missing_ok=True)
    return created


def test_the_hostile_pickles_are_live_under_plain_pickle(tmp_path):
    """The control: each hostile pickle really runs code when loaded the unsafe way (except NEWOBJ, whose class
    alone is constructed with __new__; it is here to prove the class is refused when looked up)."""
    marker = tmp_path / "ran"
    for what, blob in _hostile(marker).items():
        live = _plain_load_creates_marker(blob, marker)
        assert live == ("NEWOBJ" not in what), what


@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_hostile_pickles_are_refused_in_one_line_and_never_run(tmp_path, encoding):
    marker = tmp_path / "ran"
    expected = {"os.system via REDUCE, protocol 0": "os.system", "posix.system via STACK_GLOBAL": "posix.system",
                "builtins.eval": "builtins.eval", "builtins.exec, protocol 5": "builtins.exec",
                "subprocess.Popen": "subprocess.Popen", "__reduce__ inside a dict value": "builtins.eval",
                "INST opcode": "os.system", "OBJ opcode": "os.system", "a valid CIFAR dict after the payload":
                "os.system"}
    for what, blob in _hostile(marker).items():
        with pytest.raises(safe_pickle.PickleRefused) as info:
            safe_pickle.loads(blob, source="f.pkl", encoding=encoding)
        message = str(info.value)
        name = expected.get(what, "subprocess.Popen")
        assert message == (f"f.pkl: refused to load: the pickle names {name}, which would run code; edgebnn only "
                           "reads data"), what
        assert not marker.exists(), what


@pytest.mark.parametrize("name", ["builtins.getattr", "builtins.__import__", "copyreg._reconstructor",
                                  "numpy.load", "numpy.core.multiarray.frombuffer", "collections.OrderedDict.x",
                                  "torch._utils._rebuild_tensor_v2", "__builtin__.eval", "pickle.loads"])
def test_every_name_off_the_allow_list_is_refused(name):
    module, attr = name.rsplit(".", 1)
    blob = b"\x80\x02c" + module.encode() + b"\n" + attr.encode() + b"\n)R."
    with pytest.raises(safe_pickle.PickleRefused) as info:
        safe_pickle.loads(blob, source="x")
    shown = name.replace("__builtin__.", "builtins.")  # Python 2's name for the module, as Python 3 imports it
    assert f"names {shown}, which would run code" in str(info.value)


def _stack_global(module: str, name: str) -> bytes:
    """A protocol-4 pickle that looks ``module.name`` up with STACK_GLOBAL and calls it with no arguments."""
    parts = [pickle.SHORT_BINUNICODE + bytes([len(t.encode())]) + t.encode() for t in (module, name)]
    return b"\x80\x04" + parts[0] + parts[1] + pickle.STACK_GLOBAL + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.STOP


def test_a_hostile_name_cannot_break_the_one_line():
    blob = _stack_global("os\nos", "sys\ntem\x1b[2J")
    with pytest.raises(safe_pickle.PickleRefused) as info:
        safe_pickle.loads(blob, source="x")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert "os\\nos.sys\\ntem\\x1b[2J" in str(info.value)


def test_persistent_ids_are_refused_without_a_callers_resolver():
    blob = b"\x80\x02X\x01\x00\x00\x00kQ."  # BINPERSID of 'k'
    with pytest.raises(safe_pickle.PickleRefused, match="persistent id"):
        safe_pickle.loads(blob, source="x")
    assert safe_pickle.loads(blob, source="x", persistent_load=lambda pid: ("resolved", pid)) == ("resolved", "k")


def test_a_callers_extra_names_map_to_its_own_functions():
    blob = b"\x80\x02cmyformat\nrebuild\nK\x07\x85R."
    with pytest.raises(safe_pickle.PickleRefused):
        safe_pickle.loads(blob, source="x")
    assert safe_pickle.loads(blob, source="x", extra={"myformat.rebuild": lambda n: n * 6}) == 42


# ------------------------------------------------------------------------------------------------- data
def _arrays():
    return [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([[1e-300, -np.inf]]), np.arange(5, dtype=">i4"),
            np.array([True, False]), np.zeros((0, 3), np.uint8), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            np.array(3 + 4j), np.arange(10, dtype=np.int16)[::3],
            np.array([(1, 2.5)], dtype=[("a", "i2"), ("b", "f8")])]


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_numpy_arrays_and_scalars_round_trip(protocol):
    values = _arrays()
    scalars = [np.float32(1.5), np.int64(-7), np.bool_(True), np.float16(0.25)]
    blob = pickle.dumps([values, scalars], protocol=protocol)
    loaded, reference = safe_pickle.loads(blob, source="x"), pickle.loads(blob)
    for got, want, plain in zip(loaded[0], values, reference[0], strict=True):
        assert got.dtype == plain.dtype and got.shape == want.shape  # numpy loads >i4 as int32 (but not at 5)
        assert got.flags.writeable and got.flags.owndata
        np.testing.assert_array_equal(got, want)
    assert [(type(s), s) for s in loaded[1]] == [(type(s), s) for s in scalars]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_data_round_trips(protocol):
    value = {"a": [1, 2.5, None, True, "é", b"\x00\xff", (1, (2,))], b"k": {1, 2}, "f": frozenset({3}),
             "big": 2**100, "c": 1 - 2j, "ba": bytearray(b"xy"),
             "od": collections.OrderedDict([("z", 1), ("a", 2)])}
    value["od"]._metadata = {"": {"version": 1}}  # PyTorch's state_dict attribute, restored by BUILD
    loaded = safe_pickle.loads(pickle.dumps(value, protocol=protocol), source="x", encoding="latin1")
    assert loaded == value and list(loaded["od"]) == ["z", "a"]
    assert loaded["od"]._metadata == {"": {"version": 1}}


class _Red:
    """Pickles as ``func(*args)`` followed, when ``state`` is given, by ``BUILD state``."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_EMPTY = (np.ndarray, (0,), b"b")


@pytest.mark.parametrize("what, obj, match", [
    ("an object array whose list is shorter than its shape (segfaults numpy 1.26's own __setstate__)",
     _Red(_RECONSTRUCT, _EMPTY, (1, (10**6,), np.dtype("O"), False, [1, 2])), "numpy dtype 'O8'"),
    ("a numpy object array as numpy pickles it", np.array([1, "a", None], dtype=object), "numpy dtype 'O8'"),
    ("a one-element object array", np.array([{}], dtype=object), "numpy dtype 'O8'"),
    ("a datetime array", np.array(["2020-01-01"], dtype="M8[s]"), "numpy dtype 'M8'"),
    ("a structured dtype with an object field", np.zeros(2, dtype=[("a", "i4"), ("b", "O")]), "numpy dtype 'O8'"),
])
def test_numpy_objects_are_refused_before_numpy_sees_their_state(what, obj, match):
    for protocol in (2, 5):
        with pytest.raises(safe_pickle.PickleRefused) as info:
            safe_pickle.loads(pickle.dumps(obj, protocol=protocol), source="n")
        assert match in str(info.value) and "edgebnn only reads plain numeric arrays" in str(info.value), what


@pytest.mark.parametrize("obj", [
    _Red(np.ndarray, ((10**9,), "O")),  # a REDUCE on numpy.ndarray: 8 GB of None pointers if it ran
    _Red(_RECONSTRUCT, (np.ndarray, (10**9,), "f8")),  # accepted, but only the BUILD state makes the array
    _Red(_RECONSTRUCT, _EMPTY, (1, (10,), np.dtype("f8"), False, b"abc")),
    _Red(_RECONSTRUCT, _EMPTY, (1, (0, 2**62), np.dtype("f8"), False, b"")),
    _Red(_RECONSTRUCT, _EMPTY),
    _Red(bytearray, (10**10,)),  # 10 GB of zeros, written at once
    _Red(bytes, (10**10,)),
])
def test_malformed_numpy_reconstructions_are_one_line(obj):
    with pytest.raises(EdgebnnError) as info:
        safe_pickle.loads(pickle.dumps(obj, protocol=2), source="n")
    assert "\n" not in str(info.value)


def test_a_dtype_state_cannot_set_numpy_flags():
    """numpy's own dtype __setstate__ takes any flags (this one would claim the dtype holds objects); here the
    dtype is rebuilt from its code, byte order and fields alone."""
    blob = pickle.dumps(_Red(_RECONSTRUCT, _EMPTY, (1, (1,), _Red(np.dtype, ("V8", False, True),
                                                                     (3, "|", None, None, None, 8, 1, 63)),
                                                    False, b"AAAAAAAA")), protocol=2)
    array = safe_pickle.loads(blob, source="n")
    assert array.dtype == np.dtype("V8") and not array.dtype.hasobject and array.tobytes() == b"AAAAAAAA"


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), as CIFAR-10's published batches are."""

    def save_bytes(self, obj):
        head = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else pickle.BINSTRING + struct.pack(
            "<i", len(obj))
        self.write(head + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def _py2_dumps(obj) -> bytes:
    out = io.BytesIO()
    _Py2Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def _cifar_batch(n=4, labels=None):
    rng = np.random.RandomState(0)
    return {b"batch_label": b"training batch 1 of 5", b"labels": labels if labels is not None else [3, 1, 4, 1][:n],
            b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
            b"filenames": [b"img_%d.png" % i for i in range(n)]}


@pytest.mark.parametrize("dumps", [_py2_dumps, lambda b: pickle.dumps(b, protocol=2), pickle.dumps,
                                   lambda b: pickle.dumps(b, protocol=5)], ids=["py2", "py3-p2", "py3-p4", "py3-p5"])
def test_a_cifar_batch_round_trips(dumps):
    batch = _cifar_batch()
    blob = dumps(batch)
    if dumps is _py2_dumps:
        assert b"U\x0bbatch_label" in blob and b"T\x000\x00\x00" in blob  # Python 2 str opcodes, 12288 data bytes
    loaded = safe_pickle.loads(blob, source="x", encoding="bytes")
    assert loaded.keys() == batch.keys() and loaded[b"labels"] == batch[b"labels"]
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"filenames"] == batch[b"filenames"] and loaded[b"batch_label"] == batch[b"batch_label"]


def test_every_truncation_is_one_line():
    blob = pickle.dumps([_cifar_batch(), collections.OrderedDict(a=np.arange(3))], protocol=2)
    cuts = sorted(set(range(0, 200)) | set(range(0, len(blob), 97)))
    for cut in cuts:
        with pytest.raises(safe_pickle.PickleCorrupt) as info:
            safe_pickle.loads(blob[:cut], source="f.pkl")
        message = str(info.value)
        assert message.startswith("f.pkl: cannot read the pickle (") and "\n" not in message, (cut, message)
        assert message.endswith("it looks truncated or corrupt"), (cut, message)


def test_a_memo_index_that_would_take_gigabytes_is_refused_before_loading():
    """LONG_BINPUT and PUT grow CPython's memo to the index they name: 2**31 - 1 would be 16 GiB, filled at once."""
    for blob in (b"\x80\x02K\x01r\xff\xff\xff\x7f.", b"I1\np99999999999\n."):
        with pytest.raises(safe_pickle.PickleCorrupt, match=r"memo index \d+ at byte \d+"):
            safe_pickle.loads(blob, source="m")
    assert safe_pickle.loads(b"\x80\x02K\x01r\x02\x00\x00\x00h\x02\x86.", source="m") == (1, 1)


def test_garbage_is_one_line():
    rng, errors = np.random.RandomState(7), 0
    for i in range(300):
        blob = bytes(rng.randint(0, 256, rng.randint(1, 200)).astype(np.uint8))
        if i % 3 == 0:
            blob = b"\x80\x02" + blob
        try:
            safe_pickle.loads(blob, source="g")  # a few random streams are valid pickles ("N." is None)
        except EdgebnnError as err:
            errors += 1
            assert "\n" not in str(err) and str(err).startswith("g: "), blob
    assert errors >= 280


# ------------------------------------------------------------------------------------------------ cifar10
def _cifar_folder(root: Path, first_batch: bytes | None = None, labels=None) -> Path:
    root.mkdir(parents=True)
    (root / "batches.meta").write_bytes(_py2_dumps({b"label_names": [b"c%d" % i for i in range(10)]}))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(_py2_dumps(_cifar_batch(labels=labels if name == "test_batch" else None)))
    if first_batch is not None:
        (root / "data_batch_1").write_bytes(first_batch)
    return root


def test_cifar10_reads_python2_batches(tmp_path):
    src = data.find_source(f"cifar10:{_cifar_folder(tmp_path / 'c')}")
    assert src.class_names[:2] == ["c0", "c1"] and len(src.train) == 20
    assert src.train.labels.dtype == np.int32 and src.train.labels[:4].tolist() == [3, 1, 4, 1]
    np.testing.assert_array_equal(src.val.images[0].transpose(2, 0, 1).reshape(-1), _cifar_batch()[b"data"][0])


def test_cifar10_refuses_a_planted_batch_and_says_why(tmp_path):
    marker = tmp_path / "ran"
    blob = _hostile(marker)["a valid CIFAR dict after the payload"]
    root = _cifar_folder(tmp_path / "c", first_batch=blob)
    with pytest.raises(EdgebnnError) as info:
        data.find_source(f"cifar10:{root}")
    assert str(info.value) == (f"cifar10: {root / 'data_batch_1'}: refused to load: the pickle names os.system, "
                               "which would run code; edgebnn only reads data")
    assert not marker.exists()


@pytest.mark.parametrize("labels, needle", [
    ([0, 1, 0.5, 2], "labels that are not integer class numbers (a float: 0.5)"),
    ([0, 1, 2**40, 2], "has label 1099511627776, outside the 10 classes 0..9"),
    ([0, 1, 2**70, 2], "labels that are not integer class numbers (object array of shape (4,))"),
    (np.array([0.0, 1.0, 2.0, 3.0]), "labels that are not integer class numbers (float64 array of shape (4,))"),
    ([0, -1, 2, 3], "has label -1, outside"),
    ([0, 1, True, 3], "labels that are not integer class numbers (a bool: True)"),
    ([[0, 1], [2, 3]], "labels that are not integer class numbers (a list)"),
    (np.array([[0, 1], [2, 3]]), "labels that are not integer class numbers (int64 array of shape (2, 2))"),
    ({0: 1}, "labels that are not integer class numbers (dict)"),
])
def test_cifar10_labels_must_be_integer_classes(tmp_path, labels, needle):
    root = _cifar_folder(tmp_path / "c", labels=labels)
    with pytest.raises(EdgebnnError) as info:
        data.find_source(f"cifar10:{root}")
    assert needle in str(info.value) and "test_batch" in str(info.value) and "\n" not in str(info.value)


def test_cifar10_never_hands_numpy_a_list_that_shares_itself(tmp_path):
    """A pickle can make one list of a million labels appear a million times (a few bytes each): numpy would
    build a 10**12-element array from it. The labels and the data are refused by type first."""
    row = list(range(10)) * 100_000
    root = _cifar_folder(tmp_path / "c", labels=[row] * 4)
    with pytest.raises(EdgebnnError, match="labels that are not integer class numbers \\(a list\\)"):
        data.find_source(f"cifar10:{root}")
    batch = _cifar_batch()
    batch[b"data"] = [row] * 4
    (root / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(EdgebnnError, match="does not hold 3x32x32 images with labels \\(its data is not a uint8"):
        data._cifar_batch(root / "test_batch")


def test_cifar10_label_names_must_be_text(tmp_path):
    root = _cifar_folder(tmp_path / "c")
    shared = [b"x" * 1000] * 1000
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [shared] * 10}))  # str() would be huge
    with pytest.raises(EdgebnnError, match="does not hold the 10 label_names of CIFAR-10"):
        data.find_source(f"cifar10:{root}")


def test_cifar10_numpy_integer_labels_are_read(tmp_path):
    root = _cifar_folder(tmp_path / "c", labels=np.array([9, 0, 5, 5], dtype=np.uint8))
    assert data.find_source(f"cifar10:{root}").val.labels.tolist() == [9, 0, 5, 5]


def test_cli_refuses_a_planted_cifar_batch_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    for what in ("a valid CIFAR dict after the payload", "builtins.eval", "posix.system via STACK_GLOBAL"):
        root = _cifar_folder(tmp_path / what.replace(" ", "_"), first_batch=_hostile(marker)[what])
        proc = subprocess.run([EDGEBNN, "data", f"cifar10:{root}"], capture_output=True, text=True, cwd=tmp_path)
        line = assert_one_error_line(proc, "refused to load: the pickle names", "which would run code", only=True)
        assert line.startswith("error: cifar10: "), line
        assert not marker.exists(), what
