"""Classical image codecs through Pillow, behind the same encode/decode interface as ncodec's."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


class PillowCodec:
    """One Pillow format at a sweep of quality settings; bytes are the real encoded file."""

    def __init__(self, name: str, fmt: str, qualities: list, options: dict, quality_key: str = "quality"):
        self.name, self.fmt, self.qualities, self.options, self.quality_key = name, fmt, qualities, options, quality_key

    def encode(self, image: np.ndarray, quality) -> bytes:
        buf = io.BytesIO()
        opts = dict(self.options)
        if self.quality_key == "quality_layers":
            opts["quality_layers"] = [quality]
        else:
            opts[self.quality_key] = quality
        Image.fromarray(image).save(buf, format=self.fmt, **opts)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


def _jxl_available() -> bool:
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)
        return True
    except ImportError:
        return False


def classical_codecs() -> dict[str, PillowCodec]:
    """Every classical image codec available here, keyed by name."""
    codecs = {
        # JPEG: optimized Huffman tables, Pillow's default 4:2:0 chroma subsampling.
        "jpeg": PillowCodec("jpeg", "JPEG", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95], {"optimize": True}),
        "webp": PillowCodec("webp", "WEBP", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95], {"method": 6}),
        "avif": PillowCodec("avif", "AVIF", [10, 20, 30, 40, 50, 60, 70, 80, 90],
                            {"speed": 4, "subsampling": "4:4:4"}),
        # JPEG 2000: target compression ratios (rate mode), irreversible 9/7 wavelet.
        "jpeg2000": PillowCodec("jpeg2000", "JPEG2000", [240, 160, 100, 64, 40, 24, 16, 10],
                                {"quality_mode": "rates", "irreversible": True}, quality_key="quality_layers"),
    }
    if _jxl_available():
        codecs["jxl"] = PillowCodec("jxl", "JXL", [10, 20, 30, 40, 50, 60, 70, 80, 90], {"effort": 7})
    return codecs
