"""Image files in and out through Pillow, with the channel policy of the image codec: pixels read
upright (EXIF orientation applied), and the metadata that travels with them read and written back."""
from __future__ import annotations

import contextlib
import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from ..errors import InputError, OutputError
from ..fileio import atomic_output
from .metadata import ImageMetadata, is_icc_profile

READ_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
WRITE_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
ORIENTATION = 0x0112
XMP_TAG = 700                 # TIFF tag of the XMP packet
EXIF_PREFIX = b"Exif\x00\x00"
# TIFF tags that describe the pixel layout: an EXIF block's copies of them must not reach a TIFF file
TIFF_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284,
                              317, 320, 322, 323, 324, 325, 338, 339, 513, 514, 530, 531, 532, XMP_TAG, 34675})
_EXIF_ERRORS = (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error)
METADATA_FORMATS = {"PNG", "TIFF", "WEBP"}    # what write_image can carry metadata in


def read_image(path: Path) -> np.ndarray:
    """Read an image file as HxWxC uint8 with C = 1 (gray), 3 (RGB) or 4 (RGBA), upright.

    The EXIF orientation is applied; palette images become RGB or RGBA; images with more than 8
    bits per channel are reduced to 8 bits (ncodec's codecs are 8-bit)."""
    return read_image_and_metadata(path)[0]


def read_image_and_metadata(path: Path, keep_metadata: bool = False) -> tuple[np.ndarray, ImageMetadata]:
    """:func:`read_image`, and what travels with the pixels: the ICC profile when it describes
    them, and with ``keep_metadata`` the EXIF (orientation set to 1) and XMP."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                exif = _upright(im)
                icc = im.info.get("icc_profile")
                if im.mode == "CMYK":      # coded as sRGB, so its (CMYK) profile does not travel
                    pixels, icc = _pixels(_to_srgb(im, icc)), None
                else:
                    pixels = _pixels(im)
                metadata = ImageMetadata(icc=_matching_profile(icc, pixels.shape[2]),
                                         **(_descriptive(im, exif) if keep_metadata else {}))
                return pixels, metadata
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path}: not a supported image ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from None


def _pixels(im: Image.Image) -> np.ndarray:
    """A loaded Pillow image as HxWxC uint8 under the channel policy of :func:`read_image`."""
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


def _upright(im: Image.Image) -> Image.Exif | None:
    """Turn ``im`` upright in place by its EXIF orientation; its EXIF (None if unreadable)."""
    try:
        exif = im.getexif()
        if exif.get(ORIENTATION, 1) != 1:
            ImageOps.exif_transpose(im, in_place=True)
            exif = im.getexif()
        return exif
    except _EXIF_ERRORS:
        return None


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """A CMYK image converted through its ICC profile ``icc`` to sRGB (a plain conversion without
    a usable profile)."""
    from PIL import ImageCms

    if not icc:
        return im.convert("RGB")
    try:
        return ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                         ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im.convert("RGB")


def _matching_profile(icc: bytes | None, channels: int) -> bytes | None:
    """``icc`` if it is an ICC profile for the coded colour space (GRAY for 1 channel, RGB for 3 or
    4), else None."""
    if icc and is_icc_profile(icc) and icc[16:20] == (b"GRAY" if channels == 1 else b"RGB "):
        return icc
    return None


def _descriptive(im: Image.Image, exif: Image.Exif | None) -> dict:
    """EXIF (orientation 1, the pixels being upright) and XMP of an upright image, as raw bytes."""
    out = {}
    if exif:
        exif[ORIENTATION] = 1
        with contextlib.suppress(*_EXIF_ERRORS):       # an EXIF block Pillow cannot rewrite is left out
            out["exif"] = exif.tobytes().removeprefix(EXIF_PREFIX)
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if xmp:
        out["xmp"] = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    return out


def write_image(path: Path, image: np.ndarray, force: bool = False,
                metadata: ImageMetadata | None = None) -> list[str]:
    """Write an HxWxC uint8 array losslessly (PNG, BMP, TIFF or lossless WebP), atomically, with
    ``metadata`` embedded; returns the names of the items the format cannot carry (BMP: all)."""
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot write {path.suffix or 'files without a suffix'}: use one of "
                          f"{', '.join(sorted(WRITE_FORMATS))}")
    items = metadata.present() if metadata else {}
    options, dropped = _save_options(fmt, items) if fmt in METADATA_FORMATS else ({}, sorted(items))
    arr = image[:, :, 0] if image.shape[2] == 1 else image
    with atomic_output(path, force) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}), **options)
    return dropped


def _save_options(fmt: str, items: dict[str, bytes]) -> tuple[dict, list[str]]:
    """Pillow's save arguments embedding ``items`` (ICC, EXIF, XMP bytes) in a PNG, TIFF or WebP
    file, and the names of those it cannot embed."""
    options = {"icc_profile": items["icc"]} if "icc" in items else {}
    exif, xmp = items.get("exif"), items.get("xmp")
    if fmt == "WEBP":
        options.update({k: v for k, v in (("exif", exif), ("xmp", xmp)) if v})
        return options, []
    if fmt == "PNG":
        if exif:
            options["exif"] = exif
        if xmp:
            options["pnginfo"] = PngImagePlugin.PngInfo()
            options["pnginfo"].add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        return options, []
    tags, dropped = Image.Exif(), []      # TIFF: EXIF tags (less the layout ones) and XMP go in its IFD
    if exif:
        try:
            tags.load(exif)
        except _EXIF_ERRORS:
            dropped.append("exif")
        for tag in TIFF_LAYOUT_TAGS & set(tags):
            del tags[tag]
    if xmp:
        tags[XMP_TAG] = xmp
    if len(tags):
        options["exif"] = tags
    return options, dropped
