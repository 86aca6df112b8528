"""One reader of TFLite flatbuffers (edgebnn.tflite.fields): the schema check and the op, tensor and metadata readers
see a real converted model alike, and refuse the same broken copies of it, in one line."""

import struct

import pytest
from profile_fixtures import tiny_tflite

import edgebnn  # noqa: F401
from edgebnn import tflite
from edgebnn.errors import EdgebnnError
from edgebnn.tflite.describe import embed_metadata, histogram_of, io_tensors, read_metadata, read_ops

pytestmark = pytest.mark.slow  # converts one model (about 10 s) per session


@pytest.fixture(scope="module")
def data():
    return tiny_tflite().read_bytes()


def _refused_by_all(bad: bytes, why: str) -> None:
    """The schema check, read_ops and io_tensors refuse ``bad`` in one line naming ``why``; read_metadata raises
    ValueError (what its callers catch)."""
    assert why in tflite.problem(bad)
    for reader in (read_ops, io_tensors, tflite.check):
        with pytest.raises(EdgebnnError, match="is not a valid TFLite flatbuffer") as err:
            reader(bad)
        assert "\n" not in str(err.value) and why in str(err.value)
    with pytest.raises(ValueError):
        read_metadata(bad)


def test_the_check_and_the_readers_see_one_model(data):
    model = tflite.check(data)
    ops, graph = read_ops(data), model.subgraphs[0]
    assert [op["type"] for op in ops] == ["CONV_2D", "LceQuantize", "LceBconv2d", "LceBconv2d", "MEAN",
                                          "FULLY_CONNECTED"]
    assert histogram_of(ops)["LceBconv2d"] == 2 and len(graph.operators) == 6 and model.version == 3
    # the first binary conv feeds the second bitpacked: 32 channels in one int32 word
    assert ops[2]["outputs"] == [(graph.tensors[graph.operators[2].outputs[0]].name, [1, 16, 16, 1])]
    assert io_tensors(data) == ([(graph.tensors[graph.inputs[0]].name, [1, 16, 16, 3])],
                                [(graph.tensors[graph.outputs[0]].name, [1, 10])])
    tagged = embed_metadata(data, {"model": "bireal-18", "n": [1, 2]})
    assert read_metadata(tagged) == {"model": "bireal-18", "n": [1, 2]} and read_metadata(data) is None
    assert read_ops(tagged) == ops  # the entry adds a buffer, not an operator


def test_metadata_that_is_json_but_not_an_object_is_a_value_error(data, tmp_path):
    """A list where edgebnn writes an object: read_metadata says so, and profile names the file by its stem."""
    from edgebnn.tflite.describe import model_name

    listed = embed_metadata(data, [1, 2])
    with pytest.raises(ValueError, match="JSON but not an object"):
        read_metadata(listed)
    assert model_name(tmp_path / "tiny.tflite", listed, "0" * 64) == "tiny"


def test_every_truncation_is_refused_by_all_readers(data):
    for n in [*range(0, len(data), 13), len(data) - 1]:
        bad = data[:n]
        assert tflite.problem(bad), n
        with pytest.raises(EdgebnnError):
            read_ops(bad)
        with pytest.raises(ValueError):  # never struct.error or IndexError, which its callers do not catch
            read_metadata(bad)


def _name_at(data: bytes, name: str) -> int:
    """Where the length word of the string ``name`` lies in ``data``."""
    at = data.index(name.encode() + b"\0") - 4
    assert struct.unpack_from("<I", data, at)[0] == len(name)
    return at


def test_offsets_the_generated_schema_reads_past_are_refused(data):
    """TensorFlow's generated reader (the check's only reader before) cuts a string at the end of the bytes and
    wraps a vtable offset before the start around to the end; the interpreter reads such bytes out of bounds."""
    name = io_tensors(data)[0][0][0]
    at = _name_at(data, name)
    long_name = data[:at] + struct.pack("<I", len(data)) + data[at + 4:]
    _refused_by_all(long_name, "runs past the end")
    no_nul = bytearray(data)
    no_nul[at + 4 + len(name)] = ord("x")
    _refused_by_all(bytes(no_nul), "has no terminating NUL")
    root = struct.unpack_from("<I", data, 0)[0]
    vtable_before = data[:root] + struct.pack("<i", root + 64) + data[root + 4:]
    _refused_by_all(vtable_before, "offset -64 lies outside")


def test_metadata_naming_a_missing_buffer_is_refused(data):
    tagged = embed_metadata(data, {"model": "bireal-18"})
    r = tflite.fields._Reader(tagged)
    entry = r.tables(r.table(struct.unpack_from("<I", tagged, 0)[0]), 6)[-1]  # Model.metadata, the last entry
    at = r.field(entry, 1)  # Metadata.buffer
    bad = tagged[:at] + struct.pack("<I", 999) + tagged[at + 4:]
    n_buffers = len(tflite.check(tagged).buffers)
    assert tflite.problem(bad) == f"metadata 'edgebnn' names buffer 999 of {n_buffers}"
    with pytest.raises(ValueError, match=f"buffer 999 of {n_buffers}"):
        read_metadata(bad)


def test_a_bad_offset_in_tables_the_reader_does_not_model_is_refused(data):
    """Operator options, quantization and the like are read by TensorFlow's generated schema inside the check, so
    an options table past the end is refused too (of 80 bit-flipped copies of this model refused only there, 53
    crashed LCE's interpreter when run in a child)."""
    r = tflite.fields._Reader(data)
    graph = r.tables(r.table(struct.unpack_from("<I", data, 0)[0]), 2)[0]
    conv = r.tables(graph, 3)[0]  # CONV_2D, with Conv2DOptions
    at = r.field(conv, 4)  # Operator.builtin_options
    bad = data[:at] + struct.pack("<I", len(data)) + data[at + 4:]
    assert at and tflite.fields.parse(bad).subgraphs[0].operators[0].opcode == 0  # the fields it models still hold
    assert tflite.problem(bad) == "the flatbuffer cannot be read: an offset past the end"
    with pytest.raises(EdgebnnError, match="cannot be read: an offset past the end"):
        read_ops(bad)
