"""Image files in and out through Pillow, with the channel policy of the image codec."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError, OutputError
from ..fileio import atomic_output

READ_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
WRITE_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}


def read_image(path: Path) -> np.ndarray:
    """Read an image file as HxWxC uint8 with C = 1 (gray), 3 (RGB) or 4 (RGBA).

    Palette images become RGB or RGBA; images with more than 8 bits per channel are
    reduced to 8 bits (ncodec's codecs are 8-bit)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in ("1", "L", "I;16", "I;16B", "I;16L", "I", "F"):
                    if mode in ("I;16", "I;16B", "I;16L", "I"):
                        a = np.asarray(im, dtype=np.float64)
                        a = np.round(a / (65535.0 if a.max() > 255 else 255.0) * 255).clip(0, 255).astype(np.uint8)
                        return a[:, :, None]
                    return np.asarray(im.convert("L"))[:, :, None]
                if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in im.info):
                    return np.asarray(im.convert("RGBA"))
                return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path}: not a supported image ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from None


def write_image(path: Path, image: np.ndarray, force: bool = False) -> None:
    """Write an HxWxC uint8 array losslessly (PNG, BMP, TIFF or lossless WebP), atomically."""
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot write {path.suffix or 'files without a suffix'}: use one of "
                          f"{', '.join(sorted(WRITE_FORMATS))}")
    arr = image[:, :, 0] if image.shape[2] == 1 else image
    with atomic_output(path, force) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
