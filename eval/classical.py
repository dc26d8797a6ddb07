"""Classical image codecs through Pillow, with the same ``encode``/``decode``/``qualities`` shape as
ncodec's codecs. Every byte count is the length of the real encoded file.

=========  =====================================================================  ====================
name       settings                                                               ``quality`` means
=========  =====================================================================  ====================
jpeg       libjpeg, ``optimize=True``, Pillow's default 4:2:0 chroma subsampling  quality 1-95
webp       libwebp lossy, ``method=6``                                            quality 0-100
avif       libavif (AOM), ``speed=4``, 4:4:4                                      quality 0-100
jpeg2000   OpenJPEG, 9/7 irreversible wavelet with colour transform, rate mode    target bits per pixel
jxl        libjxl via the pillow-jxl-plugin package, effort 7                     quality 0-100
=========  =====================================================================  ====================

In every codec a higher ``quality`` gives more bytes.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
import PIL
from PIL import Image, features


class CodecUnavailable(RuntimeError):
    """The codec's library is missing from this Python environment."""


class PillowCodec:
    """One Pillow image format at a sweep of quality settings."""

    def __init__(self, name: str, fmt: str, qualities: list[float], save_options: Callable[[float], dict],
                 settings: str):
        self.name, self.format, self.qualities, self._save_options = name, fmt, list(qualities), save_options
        self.description = f"{fmt} through Pillow {PIL.__version__} ({settings})"

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """Compress a uint8 HxWx3 RGB array at ``quality``; returns the file's bytes."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.name} encodes uint8 HxWx3 RGB arrays, got {image.dtype} {image.shape}")
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=self.format, **self._save_options(quality))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        """Decompress a file's bytes to a uint8 HxWx3 RGB array."""
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    def __repr__(self) -> str:
        return f"PillowCodec({self.name!r})"


def _jxl_missing() -> str | None:
    try:
        import pillow_jxl  # noqa: F401  (importing it registers the JXL format with Pillow)
    except ImportError as e:
        return f"jxl needs the pillow-jxl-plugin package (pip install 'ncodec[jxl]'): {e}"
    return None


def _pillow_missing(feature: str, name: str) -> Callable[[], str | None]:
    return lambda: None if features.check(feature) else f"{name}: this Pillow build has no {feature} support"


# The jpeg, webp and avif sweeps are those of shared/anchors/kodak_pillow_classical.json.
_QUALITY_SWEEP = [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]

# name -> (Pillow format, default sweep, quality -> save options, settings, why unavailable or None)
_CODECS: dict[str, tuple] = {
    "jpeg": ("JPEG", _QUALITY_SWEEP, lambda q: {"quality": int(q), "optimize": True},
             "optimize, 4:2:0", _pillow_missing("jpg", "jpeg")),
    "webp": ("WEBP", [5] + _QUALITY_SWEEP, lambda q: {"quality": int(q), "method": 6},
             "method 6", _pillow_missing("webp", "webp")),
    "avif": ("AVIF", [10, 20, 30, 40, 50, 60, 70, 80, 90],
             lambda q: {"quality": int(q), "speed": 4, "subsampling": "4:4:4"},
             "speed 4, 4:4:4", _pillow_missing("avif", "avif")),
    # OpenJPEG's rate mode takes a compression ratio against the raw 24-bit pixels.
    "jpeg2000": ("JPEG2000", [0.1, 0.15, 0.25, 0.4, 0.6, 0.9, 1.3, 2.0],
                 lambda bpp: {"quality_mode": "rates", "quality_layers": [24.0 / bpp], "irreversible": True,
                              "mct": 1},
                 "OpenJPEG, 9/7 wavelet, colour transform, quality = target bpp",
                 _pillow_missing("jpg_2000", "jpeg2000")),
    "jxl": ("JXL", [10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
            lambda q: {"quality": int(q), "effort": 7}, "pillow-jxl-plugin, effort 7",
            _jxl_missing),
}

CLASSICAL_CODECS = tuple(_CODECS)


def unavailable_reason(name: str) -> str | None:
    """Why the classical codec ``name`` cannot run here, or None when it can."""
    if name not in _CODECS:
        raise ValueError(f"unknown classical codec {name!r}; known: {', '.join(CLASSICAL_CODECS)}")
    return _CODECS[name][4]()


def available_codecs() -> list[str]:
    """Names of the classical codecs that can run in this environment."""
    return [n for n in CLASSICAL_CODECS if unavailable_reason(n) is None]


def get_codec(name: str) -> PillowCodec:
    """The classical codec ``name``; raises CodecUnavailable if its library is missing."""
    reason = unavailable_reason(name)
    if reason is not None:
        raise CodecUnavailable(reason)
    fmt, qualities, options, settings, _ = _CODECS[name]
    return PillowCodec(name, fmt, qualities, options, settings)
