"""How the file API and the command line reach the image codecs (the modality interface
that :mod:`ncodec.api` expects of every ``ncodec.<modality>.app``)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..api import DEFAULT_IMAGE_CODEC as DEFAULT_CODEC
from ..container import Container
from ..errors import CorruptStreamError, UsageError
from ..fileio import check_output, write_bytes

CODECS = {
    "factorized": "Ballé 2018 factorized prior, variable rate (qualities 1-6)",
    "hyperprior": "mean-scale hyperprior, variable rate (qualities 1-6)",
    "slice": "channel-slice + checkerboard context model with LRP, variable rate (qualities 1-6)",
}
WEIGHT_FILES = {name: f"image-{name}.safetensors" for name in CODECS}
_PRECISION = ("--precision", {"choices": ["float32", "bfloat16"],
                              "help": "image: analysis/synthesis transforms in this precision (default float32 on "
                                      "CPU, bfloat16 on CUDA; bfloat16 is about 2-3x faster on CPUs with AMX or "
                                      "AVX512-BF16); any precision decodes any stream, results differ slightly"})
ENCODE_OPTIONS: list[tuple[str, dict]] = [     # --quality is common to every modality
    ("--refine", {"type": int, "help": "image: optimise the latent for this image in N steps first "
                                       "(e.g. 100; slower encoding, smaller files, same decoder)"}),
    _PRECISION,
]
DECODE_OPTIONS: list[tuple[str, dict]] = [_PRECISION]
DECODED_SUFFIX = ".png"


def accepts(path: Path) -> bool:
    """True for image files (by suffix)."""
    from .io import READ_SUFFIXES

    return Path(path).suffix.lower() in READ_SUFFIXES


@lru_cache(maxsize=8)
def _load(name: str, device: str, weights: str | None, precision: str | None, compile: bool):
    from ..api import assets_dir
    from .codec import ImageCodec, latent_codec_for
    from .weights import load_weights

    if name not in CODECS:
        raise UsageError(f"unknown image codec {name!r}; available: {', '.join(CODECS)}")
    loaded = load_weights(Path(weights) if weights else assets_dir() / WEIGHT_FILES[name])
    return ImageCodec(name, loaded.model, latent_codec_for(loaded.model, loaded.priors), loaded.digest,
                      device=device, description=CODECS[name], precision=precision, compile=compile)


def load_codec(name: str, device: str, weights: str | Path | None = None, precision: str | None = None,
               compile: bool = False):
    """The :class:`~ncodec.image.codec.ImageCodec` of a shipped model (or of another weights file);
    ``precision`` "float32" or "bfloat16" for the transforms (default: bf16 on CUDA only);
    ``compile`` runs them through ``torch.compile``."""
    return _load(name, device, str(weights) if weights else None, precision, bool(compile))


def encode_file(src: Path, dst: Path, codec: str | None, device: str, force: bool, options: dict) -> dict:
    """Encode one image file into an ``.ncz`` file."""
    from .io import read_image

    check_output(dst, force)
    image = read_image(src)
    data = load_codec(codec or DEFAULT_CODEC, device, precision=options.get("precision")).encode(
        image, quality=options.get("quality"), refine=options.get("refine") or 0)
    write_bytes(dst, data, force)
    h, w = image.shape[:2]
    bpp = 8 * len(data) / (h * w)
    return {"bytes": len(data), "bpp": bpp, "width": w, "height": h,
            "summary": f"{len(data)} bytes, {bpp:.4f} bpp"}


def decode(container: Container, device: str, precision: str | None = None):
    """Container -> HxWxC uint8 image (``precision`` of the synthesis transform as in :func:`load_codec`)."""
    if container.model not in CODECS:
        from ..errors import ModelMismatchError

        raise ModelMismatchError(f"stream needs image model {container.model!r}, which this ncodec does not ship")
    return load_codec(container.model, device, precision=precision).decode(container)


def decode_file(container: Container, dst: Path, device: str, force: bool, precision: str | None = None) -> str:
    """Decode to a lossless image file (PNG, BMP, TIFF or lossless WebP)."""
    from .io import write_image

    check_output(dst, force)
    image = decode(container, device, precision)
    write_image(Path(dst), image, force)
    return f"{image.shape[1]}x{image.shape[0]}x{image.shape[2]}"


def describe(container: Container, nbytes: int) -> dict:
    """bpp and quality of an image stream."""
    w, h = container.require("w"), container.require("h")
    if w <= 0 or h <= 0:
        raise CorruptStreamError("ncodec file declares an empty image")
    return {"bpp": 8 * nbytes / (w * h), "quality": container.require("q") / 1000}
