"""How the file API and the command line reach the image codecs (the modality interface that
:mod:`ncodec.registry` describes)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..container import Container
from ..errors import CorruptStreamError, ModelMismatchError, UsageError
from ..fileio import check_output, write_bytes
from ..registry import PRECISION_OPTION

CODECS = {
    "factorized": "Ballé 2018 factorized prior, variable rate (qualities 1-6)",
    "hyperprior": "mean-scale hyperprior, variable rate (qualities 1-6)",
    "slice": "channel-slice + checkerboard context model with LRP, variable rate (qualities 1-6)",
    "walloc": "WaLLoC: wavelet packets, a linear encoder, factorized prior (integer qualities 1-6); its small "
              "latent (32 channels at 1/8 resolution) feeds other models without decoding (ncodec.walloc)",
    "overfit": "a small decoder fitted to each image (C3/Cool-chic family): no pretraining, encoding takes "
               "minutes (--preset fast|medium|slow), no shipped weights",
    "lossless": "exact: a small model fitted to each image predicts every value (--preset fast|medium|slow), "
                "no shipped weights",
}
DEFAULT_CODEC = "slice"          # the best shipped model on Kodak that encodes in about a second
OVERFIT = "overfit"
LOSSLESS = "lossless"
FITTED = (OVERFIT, LOSSLESS)     # fitted to each image at encoding time: no weights file, --preset
WEIGHT_FILES = {name: f"image-{name}.safetensors" for name in CODECS if name not in FITTED}
DECODED_SUFFIX = ".png"
COMMANDS = {"train": "ncodec.image.train", "eval": "ncodec.eval.rd_image"}

def encode_options() -> list[tuple[str, dict]]:
    """Flags of ``ncodec encode`` for images (``--quality`` is common to every modality)."""
    return [("--refine", {"type": int, "help": "image: optimise the latent for this image in N steps first "
                                               "(e.g. 100; slower encoding, smaller files, same decoder)"}),
            PRECISION_OPTION,
            ("--preset", {"choices": ["fast", "medium", "slow"],
                          "help": "codecs fitted to each image or clip: fitting time. overfit: fast (default, about 10 "
                                  "minutes for a 768x512 photo on 2 CPU cores), medium (about 3x longer), slow (for "
                                  "GPUs); lossless: fast (default, about 20 s), medium (1 minute), slow (4 minutes), "
                                  "each smaller; video: fast (default, minutes for a QCIF clip on 2 CPU cores), "
                                  "medium (about 3x longer), slow (for GPUs)"}),
            ("--checkpoint", {"help": "overfit image codec and video: checkpoint file to save the fit to and "
                                      "resume it from"}),
            ("--seed", {"type": int, "help": "random seed of fitting (overfit and lossless image codecs, video; "
                                             "fitting is deterministic for a seed on one machine)"}),
            ("--keep-metadata", {"action": "store_true",
                                 "help": "image: also carry the EXIF (orientation reset, the pixels being upright) "
                                         "and XMP metadata; the ICC colour profile is always carried"})]


def decode_options() -> list[tuple[str, dict]]:
    """Flags of ``ncodec decode`` for images."""
    return [PRECISION_OPTION]


def accepts(path: Path) -> bool:
    """True for image files (by suffix)."""
    from .io import READ_SUFFIXES

    return Path(path).suffix.lower() in READ_SUFFIXES


@lru_cache(maxsize=8)
def _load(name: str, device: str, weights: str | None, precision: str | None, compile: bool,
          decoder_only: bool = False):
    from ..registry import assets_dir
    from .codec import ImageCodec, latent_codec_for
    from .weights import load_weights

    if name not in CODECS:
        raise UsageError(f"unknown image codec {name!r}; available: {', '.join(CODECS)}")
    if name == OVERFIT:
        from .overfit.codec import OverfitCodec

        return OverfitCodec(device)
    if name == LOSSLESS:
        from .lossless.codec import LosslessCodec

        return LosslessCodec()
    path = Path(weights) if weights else assets_dir() / WEIGHT_FILES[name]
    loaded = load_weights(path, decoder_only)
    if loaded.model.config.dims != 2:
        raise ModelMismatchError(f"{path} holds an audio model, not an image model")
    return ImageCodec(name, loaded.model, latent_codec_for(loaded.model, loaded.priors), loaded.digest,
                      device=device, description=CODECS[name], precision=precision, compile=compile)


def load_codec(name: str, device: str, weights: str | Path | None = None, precision: str | None = None,
               compile: bool = False):
    """The :class:`~ncodec.image.codec.ImageCodec` of a shipped model (or of another weights file);
    ``precision`` "float32" or "bfloat16" for the transforms (default: bf16 on CUDA only);
    ``compile`` runs them through ``torch.compile``.  ``"overfit"`` and ``"lossless"`` give the
    :class:`~ncodec.image.overfit.codec.OverfitCodec` and :class:`~ncodec.image.lossless.codec.LosslessCodec`,
    which have no weights file."""
    if name in FITTED and (weights or precision or compile):
        raise UsageError(f"the {name} codec has no weights file, precision or compile setting")
    return _load(name, device, str(weights) if weights else None, precision, bool(compile))


def encode_file(src: Path, dst: Path, codec: str | None, device: str, force: bool, options: dict) -> dict:
    """Encode one image file, upright, into an ``.ncz`` file with its ICC profile (and with
    ``keep_metadata``, its EXIF and XMP) in the stream's metadata sections."""
    from .io import read_image_and_metadata

    check_output(dst, force)
    image, metadata = read_image_and_metadata(src, keep_metadata=bool(options.get("keep_metadata")))
    extra = metadata.to_sections(str(src))
    codec = codec or DEFAULT_CODEC
    fitting = {k: options[k] for k in ("preset", "checkpoint", "seed") if options.get(k) is not None}
    amortised = {k: options[k] for k in ("refine", "precision") if options.get(k) is not None}
    if codec in FITTED:
        unused = [*amortised, *(k for k in ("quality", "checkpoint") if codec == LOSSLESS and options.get(k) is not None)]
        if unused:
            raise UsageError(f"the {codec} codec does not take {', '.join('--' + k for k in unused)}")
        if codec == OVERFIT:
            fitting["quality"] = options.get("quality")
        data = load_codec(codec, device).encode(image, progress=True, **fitting)
    else:
        if fitting:
            raise UsageError(f"{', '.join('--' + k for k in fitting)}: for the codecs fitted to each image "
                             f"(--codec {' or '.join(FITTED)})")
        data = load_codec(codec, device, precision=options.get("precision")).encode(
            image, quality=options.get("quality"), refine=options.get("refine") or 0)
    if extra:
        stream = Container.from_bytes(data)
        stream.sections.update(extra)
        data = stream.to_bytes()
    write_bytes(dst, data, force)
    h, w = image.shape[:2]
    bpp = 8 * len(data) / (h * w)
    return {"bytes": len(data), "bpp": bpp, "width": w, "height": h, "metadata": list(extra),
            "summary": f"{len(data)} bytes, {bpp:.4f} bpp" + (f", with {', '.join(extra)}" if extra else "")}


def decode(container: Container, device: str, precision: str | None = None):
    """Container -> HxWxC uint8 image (``precision`` of the synthesis transform as in :func:`load_codec`),
    by a codec loaded for decoding only (without the encoder side and CompressAI)."""
    if container.model not in CODECS:
        raise ModelMismatchError(f"stream needs image model {container.model!r}, which this ncodec does not ship")
    if container.model in FITTED:
        if precision:
            raise UsageError(f"streams of the {container.model} codec have no precision setting")
        return _load(container.model, device, None, None, False).decode(container)
    return _load(container.model, device, None, precision, False, decoder_only=True).decode(container)


def decode_file(container: Container, dst: Path, device: str, force: bool, precision: str | None = None) -> str:
    """Decode to a lossless image file (PNG, BMP, TIFF or lossless WebP) with the stream's ICC
    profile, EXIF and XMP embedded where the format can hold them; the summary names them."""
    from .io import write_image
    from .metadata import ImageMetadata

    check_output(dst, force)
    metadata = ImageMetadata.from_sections(container.sections)
    image = decode(container, device, precision)
    dropped = write_image(Path(dst), image, force, metadata)
    kept = [name for name in metadata.present() if name not in dropped]
    return (f"{image.shape[1]}x{image.shape[0]}x{image.shape[2]}" + (f", with {', '.join(kept)}" if kept else "")
            + (f", {', '.join(dropped)} not written to {Path(dst).suffix}" if dropped else ""))


def describe(container: Container, nbytes: int) -> dict:
    """bpp and quality of an image stream, and whether it carries an ICC profile and metadata."""
    from .metadata import present_in

    w, h = container.require("w"), container.require("h")
    if w <= 0 or h <= 0:
        raise CorruptStreamError("ncodec file declares an empty image")
    carried = present_in(container.sections)
    quality = "exact" if container.model == LOSSLESS else container.require("q") / 1000
    return {"bpp": 8 * nbytes / (w * h), "quality": quality,
            "icc_profile": "icc" in carried,
            "metadata": ", ".join(name for name in carried if name != "icc") or "none"}
