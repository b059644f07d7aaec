"""msgpack-numpy: the wire format of openpi-client (``openpi_client.msgpack_numpy``), written here.

An array travels as a msgpack map ``{b"__ndarray__": True, b"data": <raw bytes, C order>, b"dtype":
dtype.str, b"shape": [...]}`` and a numpy scalar as ``{b"__npgeneric__": True, b"data": <Python value>,
b"dtype": dtype.str}``; everything else is plain msgpack (maps, lists, str, bytes, numbers, bool, nil).

Only plain numeric and fixed-width string dtypes cross (bool, signed and unsigned ints, floats, ``S``,
``U``): object, void (structured) and complex arrays are refused both ways, and so is numpy's
variable-width ``StringDType``, whose bytes would be read as pointers. Nothing is ever unpickled. A decoded
array is a fresh, writable, native-byte-order copy that shares no memory with the frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:
    import msgpack
except ImportError as error:  # the optional extra; the rest of f1 works without it
    raise ImportError("f1.serve needs msgpack and websockets: pip install 'f1[serve]'") from error

from f1.errors import ProtocolError

__all__ = ["ALLOWED_DTYPE_KINDS", "packb", "unpackb"]

ALLOWED_DTYPE_KINDS = "biufSU"
"""numpy ``dtype.kind`` codes that may cross: bool, int, uint, float, bytes ``S``, unicode ``U``."""

_NDARRAY = b"__ndarray__"
_NPGENERIC = b"__npgeneric__"
_MAX_DIMS = 32


def _check_dtype(where: str, dtype: np.dtype) -> None:
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None:
        raise ProtocolError(
            f"{where}: expected a dtype of kind bool, int, uint, float, S or U, received {dtype.str!r} "
            f"(kind {dtype.kind!r}: object, void, complex and variable-width strings never cross)"
        )


def _encode(obj: Any) -> Any:
    """msgpack's ``default`` hook: arrays and numpy scalars as maps; anything else is refused."""
    if isinstance(obj, np.ndarray):
        _check_dtype("array", obj.dtype)
        return {_NDARRAY: True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        _check_dtype("numpy scalar", obj.dtype)
        return {_NPGENERIC: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"msgpack-numpy: cannot encode a {type(obj).__name__}")


def packb(obj: Any) -> bytes:
    """``obj`` (maps, lists, scalars, numpy arrays and scalars) as one msgpack-numpy message.

    Raises ``ProtocolError`` for an object, void or complex array and ``TypeError`` for other types.
    """
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def _dtype(where: str, text: object) -> np.dtype:
    if not isinstance(text, str):
        raise ProtocolError(f"{where}: expected a dtype string such as '<f4', received {type(text).__name__}")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        raise ProtocolError(f"{where}: expected a dtype string such as '<f4', received {text!r}") from None
    _check_dtype(where, dtype)
    return dtype


def _decode_array(obj: dict[Any, Any]) -> np.ndarray:
    dtype = _dtype("ndarray dtype", obj.get(b"dtype"))
    shape = obj.get(b"shape")
    if (
        not isinstance(shape, list | tuple)
        or len(shape) > _MAX_DIMS
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise ProtocolError(
            f"ndarray shape: expected a list of at most {_MAX_DIMS} sizes >= 0, received {shape!r}"
        )
    data = obj.get(b"data")
    if not isinstance(data, bytes):
        raise ProtocolError(f"ndarray data: expected raw bytes, received {type(data).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(
            f"ndarray data: expected {expected} bytes for shape {tuple(shape)} of dtype {dtype.str!r}, "
            f"received {len(data)}"
        )
    array = np.ndarray(shape=tuple(shape), dtype=dtype, buffer=data)
    return array.astype(dtype.newbyteorder("="), copy=True)  # writable, native, owns its memory


def _decode_generic(obj: dict[Any, Any]) -> np.generic:
    dtype = _dtype("numpy scalar dtype", obj.get(b"dtype"))
    value = obj.get(b"data")
    try:
        return dtype.type(value)
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(
            f"numpy scalar data: expected a value of dtype {dtype.str!r}, received {value!r}"
        ) from None


def _decode(obj: dict[Any, Any]) -> Any:
    """msgpack's ``object_hook``: the marked maps back into arrays and numpy scalars."""
    if _NDARRAY in obj:
        return _decode_array(obj)
    if _NPGENERIC in obj:
        return _decode_generic(obj)
    return obj


def unpackb(data: bytes) -> Any:
    """One msgpack-numpy message back into Python objects and numpy arrays.

    Raises:
        ProtocolError: the bytes are not one msgpack message, or an array map is malformed (dtype,
            shape, size of its data) or of a refused dtype.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"frame: expected bytes, received {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise ProtocolError(
            f"frame: expected one msgpack-numpy message, received {len(data)} bytes that do not decode "
            f"({type(error).__name__}: {error})"
        ) from None
