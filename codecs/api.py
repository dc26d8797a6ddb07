"""Public Python API: find, load and run codecs of every modality on arrays and files.

Each modality (``image``, ``video``, ``audio``) plugs in through the app module that
:mod:`ncodec.registry` names for it, which lists its codecs, says which inputs it accepts and
does the file work; this module only dispatches: by codec name, by input file, or by the
modality recorded in a stream.
"""
from __future__ import annotations

from pathlib import Path

from .container import Container
from .errors import InputError, ModelMismatchError, UsageError
from .fileio import read_bytes
from .registry import MODALITIES, app as modality_app, apps, option_dest
from .registry import assets_dir  # noqa: F401  (part of this API)

DEFAULT_IMAGE_CODEC = modality_app("image").DEFAULT_CODEC


def list_codecs(modality: str | None = None) -> list[str]:
    """Names accepted by :func:`load_codec` (optionally for one modality)."""
    found = apps()
    if modality is not None and modality not in found:
        return []
    return sorted({n for m, a in found.items() if modality in (None, m) for n in a.CODECS})


def codec_descriptions() -> list[tuple[str, str, str]]:
    """(name, modality, description) of every codec."""
    return [(n, m, d) for m, a in apps().items() for n, d in a.CODECS.items()]


def _apps_for_codec(name: str, modality: str | None = None) -> list:
    """The modality apps that have a codec called ``name`` (of ``modality`` only, if given)."""
    found = [a for m, a in apps().items() if name in a.CODECS and modality in (None, m)]
    if not found:
        where = f" for {modality}" if modality else ""
        raise UsageError(f"unknown codec {name!r}{where}; available: {', '.join(list_codecs(modality))}")
    return found


def _app_for_codec(name: str, modality: str | None = None):
    """The app of codec ``name``; a name that several modalities use (``walloc``) needs ``modality``."""
    found = _apps_for_codec(name, modality)
    if len(found) > 1:
        names = " or ".join(a.__name__.split(".")[-2] for a in found)
        raise UsageError(f"codec {name!r} exists for {names}: say which with modality=")
    return found[0]


def _device(device: str | None) -> str:
    import torch

    if device not in (None, "cpu", "cuda"):
        raise UsageError(f"device must be 'cpu' or 'cuda', not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_codec(name: str = DEFAULT_IMAGE_CODEC, device: str | None = None, modality: str | None = None, **kwargs):
    """A codec object with ``encode``/``decode`` and metadata (``name``, ``modality`` ...).

    ``device`` picks where the transforms run ("cpu" or "cuda"; default: CUDA if present);
    the entropy path is exact on either, so streams decode identically everywhere.  ``modality``
    ("image", "video" or "audio") is needed only for a name several modalities use (``walloc``).
    Image and audio codecs with shipped weights take ``weights=PATH`` to load another weights file."""
    return _app_for_codec(name, modality).load_codec(name, _device(device), **kwargs)


def encode(data, codec: str = DEFAULT_IMAGE_CODEC, quality: float | None = None, device: str | None = None,
           modality: str | None = None, **options) -> bytes:
    """Compress media (an image array/tensor, video frames, audio samples) with the named codec.  For a
    name several modalities use (``walloc``) the modality follows from ``data`` unless given: audio
    for a ``(samples, sample_rate)`` pair or with a ``sample_rate`` option, else image."""
    if modality is None and len(_apps_for_codec(codec)) > 1:
        modality = "audio" if isinstance(data, tuple) or "sample_rate" in options else "image"
    return load_codec(codec, device, modality).encode(data, quality=quality, **options)


def _container_app(c: Container):
    if c.codec not in MODALITIES:
        raise ModelMismatchError(f"streams of kind {c.codec!r} are not supported by this ncodec")
    return modality_app(c.codec)


def _checked_options(app, command: str, options: dict) -> dict:
    """``options`` if the app's modality takes them all when it does ``command`` ("encode", which
    also takes ``quality``, or "decode"), else a UsageError naming the others."""
    declared = app.encode_options() if command == "encode" else app.decode_options()
    known = {option_dest(*o) for o in declared} | ({"quality"} if command == "encode" else set())
    unknown = sorted(set(options) - known)
    if unknown:
        action = "encoding" if command == "encode" else "decoding"
        raise UsageError(f"{app.__name__.split('.')[-2]} {action} does not take "
                         f"{', '.join('--' + u.replace('_', '-') for u in unknown)}")
    return options


def decode(data: bytes, device: str | None = None, **options):
    """Decompress container bytes with the codec and model recorded in them; ``options`` are the
    modality's decode settings (images and video: ``precision``)."""
    c = Container.from_bytes(data)
    app = _container_app(c)
    return app.decode(c, _device(device), **_checked_options(app, "decode", options))


def app_for_input(src: Path, codec: str | None = None):
    """The modality app that encodes ``src`` (the codec's own if one is named; for a name several
    modalities use, the one that reads ``src``)."""
    if codec is not None:
        found = _apps_for_codec(codec)
        return next((a for a in found if a.accepts(Path(src))), found[0])
    src = Path(src)
    if not src.exists():
        raise InputError(f"{src} does not exist")
    for a in apps().values():
        if a.accepts(src):
            return a
    raise InputError(f"{src}: unsupported input type {src.suffix or '(no suffix)'}")


def encode_file(src: str | Path, dst: str | Path, codec: str | None = None, quality: float | None = None,
                device: str | None = None, force: bool = False, **options) -> dict:
    """Encode a media file into an ``.ncz`` file; returns a report (``bytes``, ``summary`` ...).

    The modality follows from ``codec`` or from the input; ``options`` are the modality's own
    settings (e.g. ``size``/``epochs`` for video, ``kbps`` for audio)."""
    src, dst = Path(src), Path(dst)
    app = app_for_input(src, codec)
    if codec is not None and not app.accepts(src):     # without a codec, app_for_input asked already
        raise InputError(f"{src}: not an input that codec {codec!r} encodes")
    if quality is not None:
        options["quality"] = quality
    return app.encode_file(src, dst, codec, _device(device), force, _checked_options(app, "encode", options))


def decode_file(src: str | Path, dst: str | Path | None = None, device: str | None = None, force: bool = False,
                folder: str | Path | None = None, **options) -> tuple[Path, str]:
    """Decode an ``.ncz`` file into a media file; returns the output path and a one-line summary.

    Give ``dst``, or ``folder`` to write ``<src stem><the modality's usual suffix>`` there;
    ``options`` as for :func:`decode`."""
    src = Path(src)
    c = Container.from_bytes(read_bytes(src))
    app = _container_app(c)
    options = _checked_options(app, "decode", options)
    dst = Path(dst) if dst is not None else Path(folder) / (src.stem + app.DECODED_SUFFIX)
    return dst, app.decode_file(c, dst, _device(device), force, **options)


def info(data: bytes) -> dict:
    """What a container holds: codec, model, media fields, bytes per section, rate."""
    c = Container.from_bytes(data)
    out = {"codec": c.codec, "model": c.model, "weights": c.weights_digest.hex(), "coder_version": c.coder_version,
           "bytes": len(data), "fields": {k: v for k, v in c.fields.items() if not isinstance(v, (bytes, list))},
           "sections": {k: len(v) for k, v in c.sections.items()}}
    out.update(_container_app(c).describe(c, len(data)))
    return out
