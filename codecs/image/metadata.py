"""What travels with an image's pixels: its ICC colour profile and, when asked, its EXIF and XMP
metadata, each stored as a zlib-compressed container section (``icc``, ``exif``, ``xmp``).

Light to import (standard library only): ``ncodec info`` reads which sections are present."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

from ..errors import CorruptStreamError, InputError

SECTIONS = ("icc", "exif", "xmp")
MAX_BYTES = 16 * 2**20          # per item, uncompressed
_WHAT = {"icc": "ICC profile", "exif": "EXIF metadata", "xmp": "XMP metadata"}


@dataclass(frozen=True)
class ImageMetadata:
    """Raw bytes of an image's ICC profile, EXIF (a TIFF structure, without the ``Exif\\0\\0``
    prefix) and XMP packet; None where absent."""

    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None

    def present(self) -> dict[str, bytes]:
        """The items that are there, by section name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def to_sections(self, source: str = "the image") -> dict[str, bytes]:
        """The container sections carrying these items; InputError for an item over MAX_BYTES."""
        out = {}
        for name, raw in self.present().items():
            if len(raw) > MAX_BYTES:
                raise InputError(f"{source}: its {_WHAT[name]} is {len(raw):,} bytes; ncodec carries at most "
                                 f"{MAX_BYTES:,}")
            out[name] = zlib.compress(raw, 9)
        return out

    @classmethod
    def from_sections(cls, sections: dict) -> "ImageMetadata":
        """The items of a stream's sections; CorruptStreamError for one that does not inflate to at
        most MAX_BYTES or does not hold what its name says."""
        items = {name: _inflate(name, sections[name]) for name in SECTIONS if name in sections}
        if "icc" in items and not is_icc_profile(items["icc"]):
            raise CorruptStreamError("ncodec file is corrupt: its 'icc' section is not an ICC profile")
        if "exif" in items and items["exif"][:4] not in (b"II*\x00", b"MM\x00*"):
            raise CorruptStreamError("ncodec file is corrupt: its 'exif' section is not EXIF data")
        return cls(**items)


def is_icc_profile(data: bytes) -> bool:
    """True if ``data`` starts like an ICC profile (a 128-byte header with the ``acsp`` signature)."""
    return len(data) >= 128 and data[36:40] == b"acsp"


def present_in(sections: dict) -> list[str]:
    """Names of the metadata sections a stream has (nothing is decompressed)."""
    return [name for name in SECTIONS if name in sections]


def _inflate(name: str, payload: bytes) -> bytes:
    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, MAX_BYTES + 1)
    except zlib.error as exc:
        raise CorruptStreamError(f"ncodec file is corrupt: its {name!r} section does not decompress ({exc})") from None
    if len(raw) > MAX_BYTES:
        raise CorruptStreamError(f"ncodec file is corrupt: its {name!r} section expands past {MAX_BYTES:,} bytes")
    if not d.eof or d.unused_data:
        raise CorruptStreamError(f"ncodec file is corrupt: its {name!r} section is truncated or padded")
    if not raw:
        raise CorruptStreamError(f"ncodec file is corrupt: its {name!r} section is empty")
    return raw
