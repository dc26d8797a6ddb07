"""How the file API and the CLI reach the video codecs (NeRV, HNeRV).

``ncodec encode clip.mp4 clip.ncz --quality 3 --preset medium`` fits NeRV (or ``--codec hnerv``) to a
clip and codes it: the quality sets the model size (relative to the clip's pixels), the preset the
fitting time.  ``--size`` sets the *model* size directly (parameters: 0.75M, 300k) and ``--epochs``
the fit; the frame size of raw I420 input is ``--frame-size WxH`` (with ``--fps``).  ``ncodec decode
clip.ncz out.mp4`` writes lossless H.264 4:4:4 (``.mp4``/``.mkv``), ``.y4m`` (4:4:4), or PNG frames
for a path without suffix.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..container import Container
from ..errors import CorruptStreamError, UsageError
from ..fileio import check_output, write_bytes
from ..registry import PRECISION_OPTION

CODECS = {
    "hnerv": "HNeRV: per-frame content embeddings + HNeRV decoder fitted to the clip (--quality, --preset)",
    "nerv": "NeRV: frame index -> positional encoding -> MLP + upsampling decoder fitted to the clip (the default)",
}
DEFAULT_CODEC = "nerv"          # beats hnerv per CPU minute on carphone and blackswan (docs/experiments.md)
DECODED_SUFFIX = ".mp4"
COMMANDS = {"eval": "ncodec.eval.rd_video"}
_READ_OPTIONS = ("frame_size", "fps", "max_frames", "crop")
# the architecture options (models.OPTIONS) as flags of `ncodec encode` and `ncodec eval video`
ARCHITECTURE_OPTIONS = [
    ("--time-knots", {"type": int, "help": "video: NeRV only: learned temporal feature grids of this many knots "
                                           "(and coarser) instead of the positional encoding (default off)"}),
    ("--local-knots", {"type": int, "help": "video: learned encodings of the position inside every upsampling "
                                            "patch, over this many knots in time (default off)"}),
    ("--affine-knots", {"type": int, "help": "video: a learned per-channel scale and shift of every upsampling "
                                             "block over this many knots in time (Boosting-NeRV; default off)"}),
    ("--residual", {"action": "store_const", "const": 1,
                    "help": "video: a separable-convolution residual block and a bilinear skip around every "
                            "upsampling block (NeRV++)"}),
]


def encode_options() -> list[tuple[str, dict]]:
    """Flags of ``ncodec encode`` for video (fitting, quantisation and how the input is read)."""
    from .codec import DEFAULT_PRESET, DEFAULTS, PRESETS

    return [
        ("--preset", {"choices": list(PRESETS), "help": f"video: fitting time (default {DEFAULT_PRESET})"}),
        ("--size", {"help": "video: model size in parameters, e.g. 0.75M or 300k, instead of --quality"}),
        ("--epochs", {"type": int, "help": "video: training epochs (default: the preset's)"}),
        ("--seed", {"type": int, "help": "random seed (fitting is deterministic for a seed)"}),
        ("--lr", {"type": float, "help": f"video: peak learning rate (default {DEFAULTS['lr']})"}),
        ("--batch-size", {"type": int, "help": f"video: frames per training step (default {DEFAULTS['batch_size']})"}),
        ("--bits", {"type": int, "help": f"video: weight quantisation bits, NeRV's stem one fewer "
                                          f"(default {DEFAULTS['bits']})"}),
        ("--embed-bits", {"type": int,
                          "help": f"video: HNeRV embedding quantisation bits (default {DEFAULTS['embed_bits']})"}),
        ("--prune", {"type": float, "help": "video: fraction of weights to prune by magnitude (default 0)"}),
        ("--prune-epochs", {"type": int, "help": "video: fine-tune epochs after pruning (default 0)"}),
        ("--qat-epochs", {"type": int, "help": "video: quantisation-aware fine-tune epochs (default: the preset's)"}),
        *ARCHITECTURE_OPTIONS,
        ("--checkpoint", {"help": "video: checkpoint file to save the fit to and resume it from"}),
        ("--frame-size", {"help": "video: WxH of raw .yuv (I420) input"}),
        ("--fps", {"help": "video: frame rate of raw .yuv or frame-folder input (default 25)"}),
        ("--max-frames", {"type": int, "help": "video: code only the first N frames"}),
        ("--crop", {"help": "video: centre-crop every frame to WxH (e.g. 1280x640 for HNeRV's Bunny)"}),
    ]


def decode_options() -> list[tuple[str, dict]]:
    """Flags of ``ncodec decode`` for video: the synthesis precision (the flag images share)."""
    return [PRECISION_OPTION]


def accepts(path: Path) -> bool:
    """Video files by suffix, raw .yuv, and folders holding frame images."""
    from .io import FRAME_SUFFIXES, READ_SUFFIXES

    path = Path(path)
    if path.is_dir():
        return any(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir())
    return path.suffix.lower() in READ_SUFFIXES


def load_codec(name: str, device: str, precision: str | None = None):
    """The :class:`~ncodec.video.codec.VideoCodec` named ``name`` on ``device`` (``precision`` of
    its synthesis as there)."""
    from .codec import VideoCodec

    return VideoCodec(name, device, precision)


def encode_file(src: Path, dst: Path, codec: str | None, device: str, force: bool, options: dict) -> dict:
    """Read, fit, code and atomically write ``dst``; nothing is written if anything fails."""
    from ..eval.metrics import psnr
    from .io import parse_wxh, read_video

    options = dict(options)
    read = {k: options.pop(k) for k in _READ_OPTIONS if k in options}
    for key in ("frame_size", "crop"):
        if key in read:
            read[key] = parse_wxh(read[key], "--" + key.replace("_", "-"))
    check_output(dst, force)
    video = read_video(src, **read)
    vc = load_codec(codec or DEFAULT_CODEC, device)
    t0 = time.perf_counter()
    encoded = vc.encode_and_reconstruct(video, **options)
    encode_s = time.perf_counter() - t0
    data = encoded.data
    write_bytes(dst, data, force)
    t, h, w = video.shape
    psnr_db, bpp = psnr(video.frames, encoded.reconstruction), 8 * len(data) / (t * h * w)
    return {"bytes": len(data), "bpp": bpp, "psnr": psnr_db, "frames": t, "params": encoded.params,
            "encode_s": encode_s,
            "summary": f"{vc.name} {encoded.params} params, {len(data)} bytes, {bpp:.4f} bpp, "
                       f"{psnr_db:.2f} dB PSNR over {t} frames {w}x{h}"}


def decode(container: Container, device: str, precision: str | None = None):
    """The decoded :class:`~ncodec.video.io.Video`."""
    return load_codec(container.model, device, precision).decode(container)


def decode_file(container: Container, dst: Path, device: str, force: bool, precision: str | None = None) -> str:
    """Decode to lossless H.264 4:4:4 (``.mp4``/``.mkv``), ``.y4m``, or PNG frames in a folder ``dst``."""
    from .io import write_video

    dst = Path(dst)
    if dst.suffix:
        check_output(dst, force)
    t0 = time.perf_counter()
    video = load_codec(container.model, device, precision).decode(container)
    decode_s = time.perf_counter() - t0
    write_video(dst, video, force)
    t, h, w = video.shape
    return f"{t} frames {w}x{h} at {float(video.fps):g} fps, decoded at {t / max(decode_s, 1e-9):.1f} frames/s"


def describe(container: Container, nbytes: int) -> dict:
    """Model size, training, bits per tensor and rates of a video stream."""
    import numpy as np

    from .bitstream import MODEL_NAMES
    from .codec import EMBEDDINGS, read_tensors

    t, h, w = (container.require(k) for k in ("frames", "h", "w"))
    fps_num, fps_den = container.require("fps_num"), container.require("fps_den")
    if min(t, h, w, fps_num, fps_den) <= 0:
        raise CorruptStreamError("ncodec video stream declares an empty clip")
    tensors = read_tensors(container, symbols=False)
    duration = t * fps_den / fps_num
    return {"bpp": 8 * nbytes / (t * h * w), "kbps": 8 * nbytes / duration / 1000, "frames": t,
            "size": f"{w}x{h}", "fps": fps_num / fps_den, "duration_s": duration,
            "params": container.fields.get("params"), "epochs": container.fields.get("epochs"),
            "bits_per_tensor": {n: f"{q.bits} bits, {'per-channel' if len(q.steps) > 1 else 'per-tensor'} step, "
                                   f"{MODEL_NAMES[q.model]} model, "
                                   f"{int(np.prod(q.shape))} values" + (" (embeddings)" if n == EMBEDDINGS else "")
                                for n, q in tensors.items()}}
