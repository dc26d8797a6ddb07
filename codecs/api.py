"""Public Python API: find, load and run codecs on arrays and files."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from .container import Container
from .errors import CorruptStreamError, InputError, ModelMismatchError, UsageError
from .fileio import read_bytes, write_bytes

DEFAULT_IMAGE_CODEC = "hyperprior"
IMAGE_MODELS = {
    "factorized": ("image-factorized.safetensors", "Ballé 2018 factorized prior, variable rate (6 levels)"),
    "hyperprior": ("image-hyperprior.safetensors", "mean-scale hyperprior, variable rate (qualities 1-6)"),
    "slice": ("image-slice.safetensors", "channel-slice context model with LRP, variable rate (qualities 1-6)"),
}


def assets_dir() -> Path:
    """Folder holding the shipped weights (``NCODEC_ASSETS`` overrides it)."""
    env = os.environ.get("NCODEC_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "assets"


def list_codecs(modality: str | None = None) -> list[str]:
    """Names accepted by :func:`load_codec` (optionally for one modality)."""
    if modality in (None, "image"):
        return sorted(IMAGE_MODELS)
    return []


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=8)
def _load_cached(name: str, device: str, weights: str | None):
    from .image.codec import ImageCodec, latent_codec_for
    from .image.weights import load_weights

    if name not in IMAGE_MODELS:
        raise UsageError(f"unknown codec {name!r}; available: {', '.join(list_codecs())}")
    path = Path(weights) if weights else assets_dir() / IMAGE_MODELS[name][0]
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    loaded = load_weights(path)
    return ImageCodec(name, loaded.model, latent_codec_for(loaded.model, loaded.priors), loaded.digest,
                      device=device, description=IMAGE_MODELS[name][1])


def load_codec(name: str = DEFAULT_IMAGE_CODEC, device: str | None = None, weights: str | Path | None = None):
    """A codec object with ``encode``/``decode``, ``qualities`` and metadata.

    ``device`` picks where the transforms run ("cpu" or "cuda"; default: CUDA if present);
    the entropy path is exact on either, so streams decode identically everywhere.
    ``weights`` loads another weights file for the named architecture."""
    if device not in (None, "cpu", "cuda"):
        raise UsageError(f"device must be 'cpu' or 'cuda', not {device!r}")
    return _load_cached(name, device or _default_device(), str(weights) if weights else None)


def encode(data, codec: str = DEFAULT_IMAGE_CODEC, quality: float | None = None, device: str | None = None) -> bytes:
    """Compress an image array or tensor with the named codec; returns container bytes."""
    return load_codec(codec, device).encode(data, quality=quality)


def decode(data: bytes, device: str | None = None):
    """Decompress container bytes with the codec and model recorded in them."""
    c = Container.from_bytes(data)
    if c.codec != "image":
        raise ModelMismatchError(f"streams of kind {c.codec!r} are not supported by this ncodec")
    if c.model not in IMAGE_MODELS:
        raise ModelMismatchError(f"stream needs image model {c.model!r}, which this ncodec does not ship")
    return load_codec(c.model, device).decode(c)


def encode_file(src: str | Path, dst: str | Path, codec: str | None = None, quality: float | None = None,
                device: str | None = None, force: bool = False) -> dict:
    """Encode an image file into an ``.ncz`` file; returns a small report (bytes, bpp)."""
    from .image.io import READ_SUFFIXES, read_image

    src, dst = Path(src), Path(dst)
    if src.suffix.lower() not in READ_SUFFIXES:
        raise InputError(f"{src}: unsupported input type {src.suffix or '(no suffix)'}; "
                         f"images: {', '.join(sorted(READ_SUFFIXES))}")
    from .fileio import check_output

    check_output(dst, force)
    image = read_image(src)
    data = encode(image, codec or DEFAULT_IMAGE_CODEC, quality, device)
    write_bytes(dst, data, force)
    h, w = image.shape[:2]
    return {"bytes": len(data), "bpp": 8 * len(data) / (h * w), "width": w, "height": h}


def decode_file(src: str | Path, dst: str | Path, device: str | None = None, force: bool = False):
    """Decode an ``.ncz`` file to an image file (PNG, BMP, TIFF or lossless WebP)."""
    from .fileio import check_output
    from .image.io import write_image

    check_output(dst, force)
    image = decode(read_bytes(src), device)
    write_image(Path(dst), image, force)
    return image


def info(data: bytes) -> dict:
    """What a container holds: codec, model, media fields, bytes per section, bpp."""
    c = Container.from_bytes(data)
    out = {"codec": c.codec, "model": c.model, "weights": c.weights_digest.hex(), "coder_version": c.coder_version,
           "bytes": len(data), "fields": {k: v for k, v in c.fields.items() if k != "ahist"},
           "sections": {k: len(v) for k, v in c.sections.items()}}
    if c.codec == "image":
        w, h = c.require("w"), c.require("h")
        if w <= 0 or h <= 0:
            raise CorruptStreamError("ncodec file declares an empty image")
        out["bpp"] = 8 * len(data) / (w * h)
        out["quality"] = c.require("q") / 1000
    return out
