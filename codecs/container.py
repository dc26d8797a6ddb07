"""The ``.ncz`` container shared by every ncodec modality.

Layout (all integers little-endian)::

    magic      4 bytes  b"\\x89NCZ"
    version    1 byte   FORMAT_VERSION
    hlen       2 bytes  length of the header that follows
    header     hlen bytes:
                 codec id, model id (u8 length + ASCII each), weights digest (8 bytes),
                 coder version (1 byte), fields (varint count, then key + typed value),
                 sections (varint count, then u8 name length + name + varint length)
    payloads   the sections' bytes, in header order
    crc32      4 bytes over everything before it

Fields are small typed values (int, float, str, bytes, int list) describing the media
(shape, timing, quality ...).  Every read is bounds-checked and every failure raises
:class:`~ncodec.errors.CorruptStreamError` with a sentence a person understands.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptStreamError, ModelMismatchError

MAGIC = b"\x89NCZ"
FORMAT_VERSION = 2
CODER_VERSION = 2          # constriction range queue, u32 words, 2^22-symbol chunks, escapes per chunk (ncodec.entropy.coder)
MAX_HEADER = 65535
MAX_SECTIONS = 256
MAX_FIELDS = 256
MAX_LIST = 4096
_FIXED = len(MAGIC) + 1 + 2
_CRC = 4


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _zz(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _unzz(n: int) -> int:
    return n // 2 if n % 2 == 0 else -(n + 1) // 2


class _Reader:
    """Bounds-checked cursor over the header bytes."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptStreamError(f"corrupt ncodec header: {what} runs past the end of the header")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        n = shift = 0
        for _ in range(10):
            b = self.u8(what)
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
        raise CorruptStreamError(f"corrupt ncodec header: {what} is not a valid number")

    def text(self, what: str) -> str:
        raw = self.take(self.u8(what), what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise CorruptStreamError(f"corrupt ncodec header: {what} is not text") from None


def _pack_value(v) -> bytes:
    if isinstance(v, bool) or isinstance(v, int):
        return b"i" + _varint(_zz(int(v)))
    if isinstance(v, float):
        return b"f" + struct.pack("<d", v)
    if isinstance(v, str):
        raw = v.encode("utf-8")
        return b"s" + _varint(len(raw)) + raw
    if isinstance(v, (bytes, bytearray)):
        return b"b" + _varint(len(v)) + bytes(v)
    if isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v):
        return b"l" + _varint(len(v)) + b"".join(_varint(_zz(int(x))) for x in v)
    raise TypeError(f"cannot store {type(v).__name__} in a container field")


def _read_value(r: _Reader, key: str):
    kind = r.take(1, f"field {key!r}")
    if kind == b"i":
        return _unzz(r.varint(f"field {key!r}"))
    if kind == b"f":
        return struct.unpack("<d", r.take(8, f"field {key!r}"))[0]
    if kind == b"s":
        try:
            return r.take(r.varint(f"field {key!r}"), f"field {key!r}").decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptStreamError(f"corrupt ncodec header: field {key!r} is not text") from None
    if kind == b"b":
        return r.take(r.varint(f"field {key!r}"), f"field {key!r}")
    if kind == b"l":
        n = r.varint(f"field {key!r}")
        if n > MAX_LIST:
            raise CorruptStreamError(f"corrupt ncodec header: field {key!r} lists {n} values")
        return [_unzz(r.varint(f"field {key!r}")) for _ in range(n)]
    raise CorruptStreamError(f"corrupt ncodec header: field {key!r} has unknown type {kind!r}")


@dataclass
class Container:
    """One compressed item: who made it, what it is, and its named byte sections."""

    codec: str
    model: str
    weights_digest: bytes
    fields: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)
    coder_version: int = CODER_VERSION

    def to_bytes(self) -> bytes:
        """Serialize (header, payloads, checksum)."""
        if len(self.weights_digest) != 8:
            raise ValueError("weights digest must be 8 bytes")
        h = bytearray()
        for s in (self.codec, self.model):
            raw = s.encode("ascii")
            h += bytes([len(raw)]) + raw
        h += self.weights_digest + bytes([self.coder_version])
        h += _varint(len(self.fields))
        for k, v in self.fields.items():
            raw = k.encode("ascii")
            h += bytes([len(raw)]) + raw + _pack_value(v)
        h += _varint(len(self.sections))
        for name, payload in self.sections.items():
            raw = name.encode("ascii")
            h += bytes([len(raw)]) + raw + _varint(len(payload))
        if len(h) > MAX_HEADER:
            raise ValueError("container header too large")
        body = MAGIC + bytes([FORMAT_VERSION]) + struct.pack("<H", len(h)) + bytes(h) + b"".join(self.sections.values())
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Container":
        """Parse and verify; raises CorruptStreamError / ModelMismatchError with a clear message."""
        data = bytes(data)
        if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
            raise CorruptStreamError("not an ncodec file (wrong magic bytes)")
        if len(data) < _FIXED + _CRC:
            raise CorruptStreamError("ncodec file is truncated (shorter than its fixed header)")
        version = data[len(MAGIC)]
        if version == 0:
            raise CorruptStreamError("ncodec file is corrupt (format version 0 does not exist)")
        if version < FORMAT_VERSION:
            raise ModelMismatchError(f"stream written by an older ncodec format version {version}; re-encode it")
        if version > FORMAT_VERSION:
            raise ModelMismatchError(
                f"ncodec file uses container format version {version}; this ncodec reads version {FORMAT_VERSION}")
        if struct.unpack("<I", data[-_CRC:])[0] != zlib.crc32(data[:-_CRC]):
            raise CorruptStreamError("ncodec file is corrupt or truncated (checksum mismatch)")
        (hlen,) = struct.unpack("<H", data[len(MAGIC) + 1:_FIXED])
        if _FIXED + hlen > len(data) - _CRC:
            raise CorruptStreamError("ncodec file is truncated (header runs past the end)")
        r = _Reader(data[_FIXED:_FIXED + hlen])
        codec, model = r.text("codec id"), r.text("model id")
        digest = r.take(8, "weights digest")
        coder_version = r.u8("coder version")
        nfields = r.varint("field count")
        if nfields > MAX_FIELDS:
            raise CorruptStreamError(f"corrupt ncodec header: {nfields} fields")
        fields = {}
        for _ in range(nfields):
            key = r.text("field name")
            fields[key] = _read_value(r, key)
        nsec = r.varint("section count")
        if nsec > MAX_SECTIONS:
            raise CorruptStreamError(f"corrupt ncodec header: {nsec} sections")
        table = [(r.text("section name"), r.varint("section length")) for _ in range(nsec)]
        if r.pos != hlen:
            raise CorruptStreamError("corrupt ncodec header: unexpected bytes after the section table")
        pos, end = _FIXED + hlen, len(data) - _CRC
        if sum(n for _, n in table) != end - pos:
            raise CorruptStreamError("ncodec file is truncated or padded (section lengths do not match its size)")
        sections = {}
        for name, n in table:
            if name in sections:
                raise CorruptStreamError(f"corrupt ncodec header: section {name!r} appears twice")
            sections[name] = data[pos:pos + n]
            pos += n
        if coder_version != CODER_VERSION:
            raise ModelMismatchError(
                f"stream was coded with entropy-coder version {coder_version}; this ncodec has {CODER_VERSION}")
        return cls(codec, model, digest, fields, sections, coder_version)

    def check_made_by(self, modality: str, model: str, digest: bytes) -> None:
        """Refuse a stream of another modality, model or weights, with a message naming both."""
        if self.codec != modality:
            raise ModelMismatchError(f"this is a {self.codec} stream, not an {modality} stream")
        if self.model != model:
            raise ModelMismatchError(f"stream was made with {modality} model {self.model!r}, not {model!r}")
        if self.weights_digest != digest:
            raise ModelMismatchError(
                f"stream was made with different weights for {modality} model {model!r} "
                f"(stream {self.weights_digest.hex()}, installed {digest.hex()}); decode it with those weights")

    def section(self, name: str) -> bytes:
        if name not in self.sections:
            raise CorruptStreamError(f"ncodec file lacks its {name!r} section")
        return self.sections[name]

    def require(self, name: str, kind=int):
        """A required header field of the given Python type."""
        v = self.fields.get(name)
        if v is None or not isinstance(v, kind) or isinstance(v, bool):
            raise CorruptStreamError(f"ncodec file lacks a valid {name!r} field")
        return v
