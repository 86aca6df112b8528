"""PyTorch checkpoints read without torch: files written by real PyTorch (Debian's python3-torch under
/usr/bin/python3, tests/torch_scripts/write_checkpoints.py) come back key for key and bit for bit in both
containers; hand-built archives cover PyTorch 2's forms and every way a file can lie; hostile files are refused
before their payload runs."""

import hashlib
import io
import json
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgebnn import safe_pickle, torch_checkpoint
from edgebnn.errors import EdgebnnError

SYSTEM_PYTHON = "/usr/bin/python3"
WRITER = Path(__file__).parent / "torch_scripts" / "write_checkpoints.py"
NAMES = ("state", "reactnet", "mixed")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """The writer's output folder. No torch there is a failure, not a skip: CI installs python3-torch."""
    out = tmp_path_factory.mktemp("torch")
    try:
        proc = subprocess.run([SYSTEM_PYTHON, str(WRITER), str(out)], capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        pytest.fail(f"{SYSTEM_PYTHON} is missing: these tests need it with PyTorch (apt-get install python3-torch)")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(f"{SYSTEM_PYTHON} could not write PyTorch checkpoints ({last}); install Debian's python3-torch")
    return out


def _one_line_error(path, match: str) -> str:
    with pytest.raises(EdgebnnError) as info:
        torch_checkpoint.read(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert match in message, message
    return message


# ------------------------------------------------------------------------------------------- real torch
@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_matches_what_torch_saved(written, name, container):
    path = written / f"{name}.{container}.pth.tar"
    expected = json.loads((written / name / "meta.json").read_text())
    checkpoint = torch_checkpoint.read(path)
    assert checkpoint.container == container
    assert checkpoint.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(checkpoint.state) == expected["keys"]  # every key, in the saved order, exactly as saved
    for key in expected["keys"]:
        want, got = np.load(written / name / f"{key}.npy"), checkpoint.state[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        assert got.tobytes() == want.tobytes(), key  # bit for bit, NaN payloads and signed zeros included
        assert got.flags.c_contiguous and got.flags.writeable and got.flags.owndata, key
    assert checkpoint.meta == expected["meta"]
    assert all(type(checkpoint.meta[k]) is type(v) for k, v in expected["meta"].items())
    assert "torch" not in sys.modules


def test_reactnet_form_keeps_data_parallel_keys_and_leaves_the_optimizer_out(written):
    checkpoint = torch_checkpoint.read(written / "reactnet.zip.pth.tar")
    assert checkpoint.meta == {"epoch": 255, "best_top1_acc": 69.5}  # best_top1_acc was a 0-d tensor
    assert all(key.startswith("module.") for key in checkpoint.state)
    assert checkpoint.state["module.1.num_batches_tracked"].dtype == np.int64
    assert checkpoint.state["module.1.num_batches_tracked"].shape == ()
    assert checkpoint.state["module.0.weight"].shape == (4, 3, 3, 3)


def test_views_come_back_as_the_values_torch_showed(written):
    state = torch_checkpoint.read(written / "mixed.legacy.pth.tar").state
    base = np.arange(24, dtype=np.float32) * 0.5 - 3.0
    np.testing.assert_array_equal(state["grid_t"], base.reshape(4, 6).T)  # stride (1, 6)
    np.testing.assert_array_equal(state["tail"], base[7:19].reshape(3, 4))  # offset 7 into a shared storage
    np.testing.assert_array_equal(state["column"], base.reshape(4, 6)[1:, 2])  # offset 8, stride 6
    np.testing.assert_array_equal(state["expanded"], [[1.5, -2.0, 4.0]] * 2)  # stride 0
    assert state["flags"].dtype == np.bool_ and state["flags"].tolist() == [True, False, True, True]
    assert state["long"].tolist() == [2**40, -(2**62), 7]


def _hostile_pickle(marker: Path) -> bytes:
    return b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


def test_a_zip_checkpoint_naming_os_system_is_refused_before_it_runs(written, tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "evil.pth.tar"
    with zipfile.ZipFile(written / "state.zip.pth.tar") as real, zipfile.ZipFile(path, "w") as evil:
        for info in real.infolist():
            body = real.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                body = _hostile_pickle(marker)[:-1] + pickle.POP + body[2:]  # the payload, then the real state dict
            evil.writestr(info.filename, body)
    assert _one_line_error(path, "refused to load") == (
        f"{path}: refused to load: the pickle names os.system, which would run code; edgebnn only reads data")
    assert not marker.exists()
    # the control: PyTorch's own loader runs it
    code = f"import torch; torch.load({str(path)!r})"
    subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, timeout=300)
    assert marker.exists()


def test_a_legacy_checkpoint_naming_os_system_is_refused(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "evil.pth"
    head = b"".join(pickle.dumps(x, protocol=2) for x in (torch_checkpoint.LEGACY_MAGIC, 1001, {"little_endian": 1}))
    path.write_bytes(head + _hostile_pickle(marker) + pickle.dumps([], protocol=2))
    _one_line_error(path, "refused to load: the pickle names os.system")
    assert not marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_truncated_files_are_one_line(written, tmp_path, name):
    for container in ("zip", "legacy"):
        blob = (written / f"{name}.{container}.pth.tar").read_bytes()
        cuts = sorted({1, 2, 10, 100, 400, len(blob) // 3, len(blob) // 2, len(blob) - 100, len(blob) - 9,
                       len(blob) - 1})
        for cut in cuts:
            path = tmp_path / f"{name}-{container}-{cut}"
            path.write_bytes(blob[:cut])
            with pytest.raises(EdgebnnError) as info:
                torch_checkpoint.read(path)
            assert "\n" not in str(info.value) and str(info.value).startswith(str(path)), (container, cut)


def test_the_legacy_format_checks_each_storage_against_the_file_size(written, tmp_path):
    blob = (written / "mixed.legacy.pth.tar").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(blob[:-1])
    _one_line_error(path, "but the file has")
    path.write_bytes(blob[:-4])  # the last storage is int64 num_batches_tracked: its 8 bytes are cut into
    _one_line_error(path, "it is truncated")


def test_random_bytes_and_other_files_are_not_checkpoints(tmp_path):
    rng = np.random.RandomState(3)
    blobs = [b"", b"\x80", bytes(rng.randint(0, 256, 5000).astype(np.uint8)),
             pickle.dumps({"state_dict": {}}, protocol=2), b"\x80\x02K\x05.", np.arange(9).tobytes()]
    for i, blob in enumerate(blobs):
        path = tmp_path / f"r{i}"
        path.write_bytes(blob)
        _one_line_error(path, torch_checkpoint.NOT_A_CHECKPOINT)
    with pytest.raises(EdgebnnError, match=r"^checkpoint \S*missing.pth does not exist: give the checkpoint file"):
        torch_checkpoint.read(tmp_path / "missing.pth")


# ----------------------------------------------------------------------------------- hand-built archives
def _s(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def _i(value: int) -> bytes:
    return b"\x8a\x08" + value.to_bytes(8, "little", signed=True)


def _g(name: str) -> bytes:
    module, attr = name.rsplit(".", 1)
    return b"c" + module.encode() + b"\n" + attr.encode() + b"\n"


def _t(*parts: bytes) -> bytes:
    return b"(" + b"".join(parts) + b"t"


def _call(name: str, *args: bytes) -> bytes:
    return _g(name) + _t(*args) + b"R"


def _storage(storage_type: str, key: str, numel: int) -> bytes:
    return _t(_s("storage"), _g(storage_type), _s(key), _s("cpu"), _i(numel)) + b"Q"


def _tensor(storage: bytes, offset: int, size, stride, rebuild="torch._utils._rebuild_tensor_v2", dtype=None):
    args = [storage, _i(offset), _t(*map(_i, size)), _t(*map(_i, stride)), b"\x89", _call("collections.OrderedDict")]
    if dtype:
        args.append(_g(dtype))
    return _call(rebuild, *args)


def _dict(entries: dict[str, bytes]) -> bytes:
    return b"}(" + b"".join(_s(k) + v for k, v in entries.items()) + b"u"


def _archive(path: Path, entries: dict[str, bytes], records: dict[str, bytes], byteorder: str | None = None):
    """A zip checkpoint as PyTorch lays it out: ``archive/data.pkl`` holding the dict ``entries`` (each value
    pickle opcodes), ``archive/data/<key>`` per storage."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + _dict(entries) + b".")
        for key, raw in records.items():
            archive.writestr(f"archive/data/{key}", raw)
        archive.writestr("archive/version", b"3\n")
        if byteorder:
            archive.writestr("archive/byteorder", byteorder.encode())
    return path


F32 = np.arange(12, dtype="<f4") / 4


def test_pytorch2_forms_are_read(tmp_path):
    f16 = np.array([0.5, -2.0, 65504.0], "<f2")
    bf16 = np.array([1.0, -3.5, 2.0**-100], "<f4").view("<u4") >> 16
    path = _archive(tmp_path / "v2.pth", {"state_dict": _dict({
        "v3_half": _tensor(_storage("torch.UntypedStorage", "0", f16.nbytes), 0, [3], [1],
                           "torch._utils._rebuild_tensor_v3", "torch.float16"),
        "bf16": _tensor(_storage("torch.BFloat16Storage", "1", 3), 0, [3], [1]),
        "param": _call("torch._utils._rebuild_parameter_with_state",
                       _tensor(_storage("torch.FloatStorage", "2", 12), 2, [2, 2], [1, 4]), b"\x88",
                       _call("collections.OrderedDict"), b"}"),
        "subclass": _call("torch._tensor._rebuild_from_type_v2", _g("torch._utils._rebuild_tensor_v2"),
                          _g("torch._tensor.Tensor"),
                          _t(_storage("torch.FloatStorage", "2", 12), _i(11), b")", b")", b"\x89",
                             _call("collections.OrderedDict")), b"}")}),
        "epoch": b"K\x07", "arch": _s("reactnet"), "acc": b"G" + struct.pack(">d", 69.4),
    }, {"0": f16.tobytes(), "1": bf16.astype("<u2").tobytes(), "2": F32.tobytes()})
    checkpoint = torch_checkpoint.read(path)
    assert checkpoint.container == "zip" and list(checkpoint.state) == ["v3_half", "bf16", "param", "subclass"]
    assert checkpoint.state["v3_half"].dtype == np.float16 and checkpoint.state["v3_half"].tolist() == f16.tolist()
    assert checkpoint.state["bf16"].dtype == np.float32 and checkpoint.state["bf16"].tolist() == [1.0, -3.5, 2.0**-100]
    np.testing.assert_array_equal(checkpoint.state["param"], [[F32[2], F32[6]], [F32[3], F32[7]]])
    assert checkpoint.state["subclass"].shape == () and checkpoint.state["subclass"] == F32[11]
    assert checkpoint.meta == {"epoch": 7, "arch": "reactnet", "acc": 69.4}


def test_a_big_endian_archive_is_swapped(tmp_path):
    path = _archive(tmp_path / "be.pth", {"w": _tensor(_storage("torch.FloatStorage", "0", 12), 0, [12], [1])},
                    {"0": F32.astype(">f4").tobytes()}, byteorder="big")
    state = torch_checkpoint.read(path).state
    assert state["w"].dtype == np.float32 and state["w"].dtype.isnative and state["w"].tolist() == F32.tolist()


@pytest.mark.parametrize("tensor, records, match", [
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [4, 4], [4, 1]), {"0": F32.tobytes()},
     "reaches element 15 of a storage of 12"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 6, [2, 4], [1, 2]), {"0": F32.tobytes()},
     "reaches element 13 of a storage of 12"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 12, [], []), {"0": F32.tobytes()},
     "reaches element 12 of a storage of 12"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [12], [1]), {"0": F32.tobytes()[:40]},
     "storage 0 holds 10 float32 elements but the checkpoint says 12"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [2, 2], [-1, 1]), {"0": F32.tobytes()},
     "negative size, stride or offset"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [2**20, 2**20], [0, 0]), {"0": F32.tobytes()},
     "the state dict's tensors would take up to 4398046511104 bytes, more than 268435456 (4x the file)"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [0, 2**62], [1, 1]), {"0": F32.tobytes()},
     "would take up to 18446744073709551616 bytes"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [1] * 33, [1] * 33), {"0": F32.tobytes()},
     "has 33 dimensions, more than the 32 numpy holds"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [12], [1]), {}, "storage record archive/data/0 is missing"),
    (_tensor(_storage("torch.FloatStorage", "0", 12), 0, [12], [1, 1]), {"0": F32.tobytes()},
     "a tensor has 1 sizes but 2 strides"),
    (_tensor(b"K\x05", 0, [12], [1]), {"0": F32.tobytes()}, "a tensor's storage is not a storage record"),
    (_tensor(_storage("torch.QInt8Storage", "0", 12), 0, [12], [1]), {"0": F32.tobytes()},
     "the pickle names torch.QInt8Storage"),
    (_call("torch._utils._rebuild_qtensor", b"K\x01"), {}, "the pickle names torch._utils._rebuild_qtensor"),
    (_tensor(_t(_s("storage"), _g("torch.FloatStorage"), _s("0"), _s("cpu")) + b"Q", 0, [1], [1]), {},
     "a persistent id is not a 5-field storage record"),
])
def test_an_archive_that_lies_is_one_line(tmp_path, tensor, records, match):
    path = _archive(tmp_path / "bad.pth", {"w": tensor}, records)
    _one_line_error(path, match)


def test_empty_and_expanded_tensors_within_the_memory_bound_are_read(tmp_path):
    path = _archive(tmp_path / "ok.pth", {
        "empty": _tensor(_storage("torch.FloatStorage", "0", 0), 0, [0, 3], [3, 1]),
        "wide": _tensor(_storage("torch.FloatStorage", "1", 12), 5, [1000, 2], [0, 1]),
    }, {"0": b"", "1": F32.tobytes()})
    state = torch_checkpoint.read(path).state
    assert state["empty"].shape == (0, 3) and state["empty"].dtype == np.float32
    assert state["wide"].shape == (1000, 2) and (state["wide"] == F32[5:7]).all()


def test_a_file_without_a_state_dict_is_one_line(tmp_path):
    path = _archive(tmp_path / "list.pth", {"epoch": b"K\x01", "model": b"]"}, {})
    _one_line_error(path, "holds no state_dict and is not a mapping of names to tensors (dict: epoch, model)")
    path = _archive(tmp_path / "bad.pth", {"state_dict": b"}" + _s("w") + b"K\x01s"}, {})
    _one_line_error(path, "state_dict entry w is not a named tensor")


def test_a_zip_bomb_record_is_refused_before_it_is_unpacked(tmp_path):
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}." + bytes(40 << 20))
    _one_line_error(path, "unpacks to 41943044 bytes, far more than the file holds")


def test_safe_pickle_refuses_torch_names_unless_the_reader_adds_them():
    blob = _call("torch._utils._rebuild_parameter", b"K\x01") + b"."
    with pytest.raises(safe_pickle.PickleRefused):
        safe_pickle.load(io.BytesIO(b"\x80\x02" + blob), source="x")


def test_a_flipped_byte_in_a_stored_record_fails_its_crc(written, tmp_path):
    blob = bytearray((written / "state.zip.pth.tar").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(blob))) as archive:
        info = archive.getinfo(next(n for n in archive.namelist() if n.endswith("/data/0")))
    assert info.compress_type == zipfile.ZIP_STORED  # as PyTorch writes every record
    name_len, extra_len = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
    blob[info.header_offset + 30 + name_len + extra_len + 5] ^= 0x01
    path = tmp_path / "flipped.pth"
    path.write_bytes(bytes(blob))
    _one_line_error(path, "fails its CRC-32 check")


def test_mutated_files_are_read_or_refused_in_one_line(written, tmp_path, capfd):
    """Random byte changes in data.pkl (the zip rewritten, so its CRCs hold) and in a legacy file's pickles: each
    file is read or refused with one EdgebnnError line, with nothing else escaping or printed."""
    rng = np.random.RandomState(11)
    with zipfile.ZipFile(written / "mixed.zip.pth.tar") as real:
        records = {n: real.read(n) for n in real.namelist()}
    pkl = next(n for n in records if n.endswith("/data.pkl"))
    legacy = (written / "mixed.legacy.pth.tar").read_bytes()
    path, refused = tmp_path / "mutant.pth", 0
    for i in range(300):
        blob = bytearray(records[pkl] if i % 2 else legacy)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randint(min(len(blob), 3000))] = rng.randint(256)
        if i % 2:
            with zipfile.ZipFile(path, "w") as archive:
                for name, body in records.items():
                    archive.writestr(name, bytes(blob) if name == pkl else body)
        else:
            path.write_bytes(bytes(blob))
        try:
            torch_checkpoint.read(path)
        except EdgebnnError as err:
            refused += 1
            assert "\n" not in str(err), str(err)
    assert refused > 150
    assert capfd.readouterr() == ("", "")


def _legacy(path: Path, state: dict[str, bytes], storages: list[tuple[str, int, bytes]], version: int = 1001,
            keys: list[str] | None = None) -> Path:
    """A legacy stream as torch.save(..., _use_new_zipfile_serialization=False) lays it out: magic, protocol
    version, sys_info, the object (``{"state_dict": state}``), the key list, then per storage an 8-byte
    little-endian element count and its bytes."""
    head = b"".join(pickle.dumps(x, protocol=2) for x in (torch_checkpoint.LEGACY_MAGIC, version,
                                                          {"protocol_version": 1001, "little_endian": True}))
    body = b"\x80\x02" + _dict({"state_dict": _dict(state), "epoch": b"K\x03"}) + b"."
    tail = pickle.dumps(keys if keys is not None else [k for k, _, _ in storages], protocol=2)
    blobs = b"".join(count.to_bytes(8, "little") + raw for _, count, raw in storages)
    path.write_bytes(head + body + tail + blobs)
    return path


def _legacy_storage(key: str, numel: int, view=None) -> bytes:
    view_bytes = b"N" if view is None else _t(_s(view[0]), _i(view[1]), _i(view[2]))
    return _t(_s("storage"), _g("torch.FloatStorage"), _s(key), _s("cpu"), _i(numel), view_bytes) + b"Q"


def test_old_legacy_storage_views_are_read(tmp_path):
    """PyTorch < 1.0 could pickle a view of a storage: (view_key, offset, size) beside the root key."""
    path = _legacy(tmp_path / "views.pth", {
        "whole": _tensor(_legacy_storage("root", 12), 0, [12], [1]),
        "view": _tensor(_legacy_storage("root", 12, ("v", 4, 6)), 1, [2, 2], [3, 1]),
    }, [("root", 12, F32.tobytes())])
    checkpoint = torch_checkpoint.read(path)
    assert checkpoint.container == "legacy" and checkpoint.meta == {"epoch": 3}
    np.testing.assert_array_equal(checkpoint.state["whole"], F32)
    np.testing.assert_array_equal(checkpoint.state["view"], [[F32[5], F32[6]], [F32[8], F32[9]]])


@pytest.mark.parametrize("state, storages, kwargs, match", [
    ({"w": _tensor(_legacy_storage("root", 12, ("v", 8, 6)), 0, [6], [1])}, [("root", 12, F32.tobytes())], {},
     "storage root holds 12 float32 elements but the checkpoint says 14"),
    ({"w": _tensor(_legacy_storage("root", 12), 0, [12], [1])}, [("root", 13, F32.tobytes())], {},
     "storage root says 13 elements (52 bytes) but the file has 48 left"),
    ({"w": _tensor(_legacy_storage("root", 12), 0, [12], [1])}, [("root", 12, F32.tobytes())], {"version": 1000},
     "legacy PyTorch protocol version 1000, not 1001"),
    ({"w": _tensor(_legacy_storage("root", 12), 0, [12], [1])}, [("root", 12, F32.tobytes())],
     {"keys": ["root", "other"]}, "the legacy storage key list does not match the storages the tensors use"),
    ({"w": _tensor(_legacy_storage("root", 12), 0, [12], [1])}, [], {"keys": []},
     "storage root is used but not stored"),
    ({"w": _tensor(_storage("torch.FloatStorage", "root", 12), 0, [12], [1])}, [("root", 12, F32.tobytes())], {},
     "a persistent id is not a 6-field storage record"),
])
def test_a_legacy_file_that_lies_is_one_line(tmp_path, state, storages, kwargs, match):
    _one_line_error(_legacy(tmp_path / "bad.pth", state, storages, **kwargs), match)
