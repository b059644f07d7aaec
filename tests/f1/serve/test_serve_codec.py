"""The msgpack-numpy codec: lossless, wire-compatible with openpi-client both ways, never unpickling."""

from __future__ import annotations

import pickle
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from openpi_client import msgpack_numpy as openpi

from f1.errors import ProtocolError
from f1.serve import packb, unpackb

ENDIANNESS = st.sampled_from(["<", ">", "="])
DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"),
    hnp.byte_string_dtypes(endianness="?"),
    hnp.unicode_string_dtypes(endianness="?"),
)
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))


def _same(decoded: Any, original: np.ndarray) -> None:
    """Same shape, same dtype up to byte order, same bytes (NaN payloads included)."""
    assert isinstance(decoded, np.ndarray)
    assert decoded.shape == original.shape
    native = original.dtype.newbyteorder("=")
    assert decoded.dtype.newbyteorder("=") == native
    assert decoded.astype(native).tobytes() == original.astype(native).tobytes()


@settings(max_examples=150, deadline=None)
@given(ARRAYS)
def test_every_allowed_array_round_trips_bit_for_bit(array: np.ndarray) -> None:
    decoded = unpackb(packb({"x": array}))["x"]
    _same(decoded, array)
    assert decoded.dtype.isnative
    assert decoded.flags.writeable
    assert decoded.flags.owndata or (decoded.base is not None and decoded.base.flags.owndata)


@settings(max_examples=100, deadline=None)
@given(ARRAYS)
def test_the_wire_format_is_openpi_clients_in_both_directions(array: np.ndarray) -> None:
    _same(openpi.unpackb(packb(array)), array)
    _same(unpackb(openpi.packb(array)), array)
    assert packb(array) == openpi.packb(array)


@settings(max_examples=60, deadline=None)
@given(hnp.from_dtype(np.dtype("<f4")) | hnp.from_dtype(np.dtype("<i8")) | hnp.from_dtype(np.dtype("?")))
def test_numpy_scalars_round_trip_as_npgeneric(value: Any) -> None:
    scalar = np.array(value).reshape(()).dtype.type(value)
    for decoded in (unpackb(packb(scalar)), unpackb(openpi.packb(scalar)), openpi.unpackb(packb(scalar))):
        assert type(decoded) is type(scalar)
        assert np.array(decoded).tobytes() == np.array(scalar).tobytes()


def test_nested_maps_lists_and_plain_values_round_trip() -> None:
    message = {
        "actions": np.arange(12, dtype=np.float32).reshape(3, 4),
        "server_timing": {"infer_ms": 1.5},
        "names": ["a", "b"],
        "flag": True,
        "nothing": None,
        "raw": b"\x00\x01",
    }
    decoded = unpackb(packb(message))
    assert decoded.keys() == message.keys()
    np.testing.assert_array_equal(decoded["actions"], message["actions"])
    assert {k: v for k, v in decoded.items() if k != "actions"} == {
        k: v for k, v in message.items() if k != "actions"
    }


def test_a_non_contiguous_array_travels_in_c_order() -> None:
    array = np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2].T
    np.testing.assert_array_equal(unpackb(packb(array)), array)


@pytest.mark.parametrize(
    "array",
    [
        np.array([object()], dtype=object),
        np.array([1 + 2j], dtype=np.complex64),
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]),
        np.zeros(2, dtype="V4"),
    ],
    ids=["object", "complex", "structured", "void"],
)
def test_object_void_and_complex_arrays_are_refused_when_packing(array: np.ndarray) -> None:
    with pytest.raises(
        ProtocolError, match=r"array: expected a dtype of kind bool, int, uint, float, S or U"
    ):
        packb({"x": array})


def test_other_python_objects_are_refused_when_packing() -> None:
    with pytest.raises(TypeError, match="cannot encode a set"):
        packb({"x": {1, 2}})


def _crafted(**fields: Any) -> bytes:
    """An ndarray map with chosen fields, packed without our codec (what a hostile client could send)."""
    base = {b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "<f4", b"shape": [2]}
    base.update({k.encode(): v for k, v in fields.items()})
    return msgpack.packb({"x": base}, use_bin_type=True)


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        raise AssertionError("unpickled")  # pragma: no cover - reached only if something unpickles


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_crafted(dtype="|O", data=pickle.dumps([1, 2])[:16], shape=[2]), r"received '\|O'"),
        (_crafted(dtype="<c8", shape=[1]), r"received '<c8'"),
        (_crafted(dtype="|V8", shape=[1]), r"received '\|V8'"),
        (_crafted(dtype="<i4,<f4", shape=[1]), r"kind 'V'"),
        (_crafted(dtype="T", shape=[1]), r"kind 'T'"),
        (_crafted(dtype="not a dtype"), r"ndarray dtype: expected a dtype string such as '<f4', received"),
        (_crafted(dtype=3), r"ndarray dtype: expected a dtype string such as '<f4', received int"),
        (_crafted(shape=[3]), r"ndarray data: expected 12 bytes for shape \(3,\) of dtype '<f4', received 8"),
        (_crafted(shape=[-2]), r"ndarray shape: expected a list of at most 32 sizes >= 0, received \[-2\]"),
        (_crafted(shape="2"), r"ndarray shape: expected a list of at most 32 sizes >= 0, received '2'"),
        (_crafted(shape=[1] * 40, data=b"\x00" * 4), r"at most 32 sizes"),
        (_crafted(data="text"), r"ndarray data: expected raw bytes, received str"),
        (
            msgpack.packb({b"__npgeneric__": True, b"data": "x", b"dtype": "<i4"}, use_bin_type=True),
            r"numpy scalar data: expected a value of dtype '<i4', received 'x'",
        ),
        (b"\xc1", r"frame: expected one msgpack-numpy message, received 1 bytes that do not decode"),
        (msgpack.packb({"a": 1}) + b"\x01", r"that do not decode \(ExtraData"),
        (msgpack.packb({"a": 1})[:-1], r"that do not decode"),
        (msgpack.packb({1: 2}), r"that do not decode"),
        (pickle.dumps(_Boom, protocol=2), r"that do not decode"),
    ],
    ids=[
        "object",
        "complex",
        "void",
        "structured",
        "stringdtype",
        "bad-dtype",
        "dtype-not-str",
        "short-data",
        "negative-shape",
        "shape-not-list",
        "too-many-dims",
        "data-not-bytes",
        "bad-scalar",
        "not-msgpack",
        "extra-data",
        "truncated",
        "int-key",
        "pickle",
    ],
)
def test_malformed_or_refused_frames_raise_protocol_errors_naming_the_field(
    frame: bytes, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        unpackb(frame)
