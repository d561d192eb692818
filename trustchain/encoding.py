"""Canonical, versioned binary encoding for protocol messages.

Signatures and digests are computed over these bytes, so one value has exactly one encoding:
fixed-width big-endian integers, length-prefixed byte strings, count-prefixed tuples, fields in
declaration order. Decoding is strict: trailing bytes, short input, bad UTF-8, out-of-range values
and over-long collections raise `DecodeError`, never anything else.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from trustchain.errors import TrustChainError

__all__ = ["MAX_BYTES", "MAX_COLLECTION", "DecodeError", "Decoder", "Encoder", "T", "decode", "decode_prefix", "encode"]

T = TypeVar("T")

MAX_COLLECTION = 1 << 20
MAX_BYTES = 1 << 26


class DecodeError(TrustChainError, ValueError):
    """Raised for any malformed encoding; the message names the field that failed."""


Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[memoryview, int], tuple[Any, int]]


def _need(buf: memoryview, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise DecodeError(f"{what}: truncated (need {n} bytes at offset {pos}, have {len(buf) - pos})")


def _enc_uint(v: Any, out: bytearray) -> None:
    if type(v) is not int or v < 0 or v >= 1 << 64:
        raise TypeError(f"expected unsigned 64-bit int, got {v!r}")
    out += struct.pack(">Q", v)


_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


def _dec_uint(buf: memoryview, pos: int) -> tuple[Any, int]:
    if pos + 8 > len(buf):
        _need(buf, pos, 8, "uint64")
    return _U64.unpack_from(buf, pos)[0], pos + 8


def _enc_bool(v: Any, out: bytearray) -> None:
    if type(v) is not bool:
        raise TypeError(f"expected bool, got {v!r}")
    out.append(1 if v else 0)


def _dec_bool(buf: memoryview, pos: int) -> tuple[Any, int]:
    _need(buf, pos, 1, "bool")
    b = buf[pos]
    if b > 1:
        raise DecodeError(f"bool: invalid byte {b}")
    return b == 1, pos + 1


def _enc_bytes(v: Any, out: bytearray) -> None:
    if type(v) is not bytes:
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    out += struct.pack(">I", len(v))
    out += v


def _dec_bytes(buf: memoryview, pos: int) -> tuple[Any, int]:
    _need(buf, pos, 4, "bytes length")
    (n,) = _U32.unpack_from(buf, pos)
    if n > MAX_BYTES:
        raise DecodeError(f"bytes: length {n} exceeds {MAX_BYTES}")
    end = pos + 4 + n
    if end > len(buf):
        _need(buf, pos + 4, n, "bytes body")
    return bytes(buf[pos + 4 : end]), end


def _enc_str(v: Any, out: bytearray) -> None:
    if type(v) is not str:
        raise TypeError(f"expected str, got {type(v).__name__}")
    _enc_bytes(v.encode("utf-8"), out)


def _dec_str(buf: memoryview, pos: int) -> tuple[Any, int]:
    raw, pos = _dec_bytes(buf, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise DecodeError(f"str: invalid UTF-8 ({exc.reason})") from None


_PRIMITIVES: dict[Any, tuple[Encoder, Decoder]] = {
    int: (_enc_uint, _dec_uint),
    bool: (_enc_bool, _dec_bool),
    bytes: (_enc_bytes, _dec_bytes),
    str: (_enc_str, _dec_str),
}

_CODECS: dict[Any, tuple[Encoder, Decoder]] = {}


def _codec_for(tp: Any) -> tuple[Encoder, Decoder]:
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    if tp in _CODECS:
        return _CODECS[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    codec: tuple[Encoder, Decoder]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        codec = _tuple_codec(args[0])
    elif origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        codec = _optional_codec(next(a for a in args if a is not type(None)))
    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        codec = _dataclass_codec(tp)
    else:
        raise TypeError(f"no canonical encoding for type {tp!r}")
    _CODECS[tp] = codec
    return codec


def _tuple_codec(item: Any) -> tuple[Encoder, Decoder]:
    def enc(v: Any, out: bytearray) -> None:
        if type(v) is not tuple:
            raise TypeError(f"expected tuple, got {type(v).__name__}")
        item_enc = _codec_for(item)[0]
        out += struct.pack(">I", len(v))
        for x in v:
            item_enc(x, out)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        _need(buf, pos, 4, "tuple count")
        (n,) = struct.unpack_from(">I", buf, pos)
        if n > MAX_COLLECTION or n > len(buf) - pos:
            raise DecodeError(f"tuple: count {n} is larger than the input allows")
        pos += 4
        item_dec = _codec_for(item)[1]
        items = []
        for _ in range(n):
            x, pos = item_dec(buf, pos)
            items.append(x)
        return tuple(items), pos

    return enc, dec


def _optional_codec(inner: Any) -> tuple[Encoder, Decoder]:
    def enc(v: Any, out: bytearray) -> None:
        if v is None:
            out.append(0)
        else:
            out.append(1)
            _codec_for(inner)[0](v, out)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        present, pos = _dec_bool(buf, pos)
        if not present:
            return None, pos
        return _codec_for(inner)[1](buf, pos)

    return enc, dec


def _dataclass_codec(cls: type) -> tuple[Encoder, Decoder]:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    field_types = [hints[n] for n in names]
    # Resolved on first use (not here), so that self-referential and mutually recursive types work.
    resolved: list[tuple[str, Encoder, Decoder]] = []

    def fields() -> list[tuple[str, Encoder, Decoder]]:
        if not resolved:
            resolved.extend((n, *_codec_for(tp)) for n, tp in zip(names, field_types, strict=True))
        return resolved

    def enc(v: Any, out: bytearray) -> None:
        if type(v) is not cls:
            raise TypeError(f"expected {cls.__name__}, got {type(v).__name__}")
        for name, field_enc, _ in fields():
            try:
                field_enc(getattr(v, name), out)
            except TypeError as exc:
                raise TypeError(f"{cls.__name__}.{name}: {exc}") from None

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        values = []
        for name, _, field_dec in fields():
            try:
                x, pos = field_dec(buf, pos)
            except DecodeError as exc:
                raise DecodeError(f"{cls.__name__}.{name}: {exc}") from None
            values.append(x)
        try:
            return cls(*values), pos
        except (ValueError, TypeError, AssertionError) as exc:
            raise DecodeError(f"{cls.__name__}: {exc}") from None

    return enc, dec


def encode(value: Any) -> bytes:
    """Canonical bytes of a dataclass value (its type is implied by context, not encoded)."""
    out = bytearray()
    _codec_for(type(value))[0](value, out)
    return bytes(out)


def decode(cls: type[T], data: bytes) -> T:
    """Strict inverse of `encode`: rejects trailing bytes."""
    buf = memoryview(data)
    value, pos = _codec_for(cls)[1](buf, 0)
    if pos != len(buf):
        raise DecodeError(f"{cls.__name__}: {len(buf) - pos} trailing bytes")
    return typing.cast(T, value)


def decode_prefix(cls: type[T], data: bytes) -> T:
    """Decode a `cls` value from the start of `data`, ignoring what follows: reads the leading fields
    of a larger value (e.g. the `op` every command envelope starts with) without decoding all of it."""
    value, _ = _codec_for(cls)[1](memoryview(data), 0)
    return typing.cast(T, value)
