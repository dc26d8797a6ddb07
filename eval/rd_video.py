"""Rate-distortion sweep of video codecs on one clip: ncodec's NeRV/HNeRV against x264, x265 and
SVT-AV1 through PyAV, on the same RGB frames and with the same metric code.

Per point: bpp (every byte of the .ncz file; for the classical codecs the bytes of their coded
packets, container overhead not counted), mean per-frame PSNR on RGB and on Y (BT.601, from the
RGB frames the same way for every codec), mean per-frame MS-SSIM, encoding seconds and decoding
frames per second.  One JSON per curve in CompressAI's layout, ``bdrate.md``/``.csv`` against an
anchor and a plot."""
from __future__ import annotations

import json
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from skimage.color import rgb2ycbcr
from tqdm import tqdm

from ..errors import UsageError
from ..fileio import write_text
from ..video.app import ARCHITECTURE_OPTIONS
from . import bdrate
from .metrics import ms_ssim, psnr
from .plot import plot_rd
from .rd_image import bd_table, write_bd_table

NCODEC_CODECS = ("hnerv", "nerv")
# name -> (CRF sweep, PyAV options for a CRF, description); decoders by encoder name
DECODERS = {"libx264": "h264", "libx265": "hevc", "libsvtav1": "libdav1d"}
CLASSICAL = {
    "libx264": ([18, 23, 28, 33, 38, 43], lambda crf: {"crf": str(crf), "preset": "medium"},
                "x264 preset medium, CRF sweep, 4:2:0"),
    "libx265": ([18, 23, 28, 33, 38, 43], lambda crf: {"crf": str(crf), "preset": "medium",
                                                       "x265-params": "log-level=error"},
                "x265 preset medium, CRF sweep, 4:2:0"),
    "libsvtav1": ([25, 35, 45, 55, 63], lambda crf: {"crf": str(crf), "preset": "8"},
                  "SVT-AV1 preset 8, CRF sweep, 4:2:0"),
}


def clip_metrics(ref: np.ndarray, test: np.ndarray) -> dict:
    """Mean per-frame PSNR-RGB, PSNR-Y (BT.601 luma of the RGB frames, peak 255) and MS-SSIM."""
    psnr_rgb = [psnr(r, t) for r, t in zip(ref, test)]
    psnr_y = [psnr(rgb2ycbcr(r)[..., 0], rgb2ycbcr(t)[..., 0], data_range=255) for r, t in zip(ref, test)]
    return {"psnr-rgb": float(np.mean(np.minimum(psnr_rgb, 100))), "psnr-y": float(np.mean(np.minimum(psnr_y, 100))),
            "ms-ssim-rgb": float(np.mean([ms_ssim(r, t) for r, t in zip(ref, test)]))}


def classical_point(frames: np.ndarray, fps, name: str, crf: int) -> dict:
    """Encode the frames with a PyAV encoder at one CRF, decode them, measure."""
    import av

    os.environ.setdefault("SVT_LOG", "1")    # SVT-AV1: errors only, not its configuration banner
    t, h, w = frames.shape[:3]
    t0 = time.perf_counter()
    codec = av.CodecContext.create(name, "w")
    codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
    fps = Fraction(fps)
    codec.framerate, codec.time_base = fps, 1 / fps
    codec.options = CLASSICAL[name][1](crf)
    packets = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        packets += codec.encode(vf)
    packets += codec.encode(None)
    t1 = time.perf_counter()
    nbytes = sum(p.size for p in packets)
    dec = av.CodecContext.create(DECODERS[name], "r")
    out = []
    for p in packets:
        out += [f.to_ndarray(format="rgb24") for f in dec.decode(p)]
    out += [f.to_ndarray(format="rgb24") for f in dec.decode(None)]
    t2 = time.perf_counter()
    if len(out) != t:
        raise RuntimeError(f"{name} returned {len(out)} of {t} frames")
    return {"crf": crf, "bytes": nbytes, "bpp": 8 * nbytes / (t * h * w), **clip_metrics(frames, np.stack(out)),
            "encoding_time": t1 - t0, "decoding_time": t2 - t1, "decoding_fps": t / (t2 - t1)}


def ncodec_point(codec, video, options: dict) -> dict:
    """Fit and code a clip with an ncodec video codec (public API), decode it, measure."""
    t, h, w = video.shape
    t0 = time.perf_counter()
    data = codec.encode(video, **options)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    setting = {k: options[k] for k in ("quality", "size", "bits") if k in options}
    return {**setting, "bytes": len(data), "bpp": 8 * len(data) / (t * h * w), **clip_metrics(video.frames, out.frames),
            "encoding_time": t1 - t0, "decoding_time": t2 - t1, "decoding_fps": t / (t2 - t1)}


def _write_curve(out_dir: Path, name: str, description: str, points: list[dict]) -> dict:
    points = sorted(points, key=lambda p: p["bpp"])
    results = {k: [p[k] for p in points] for k in points[0]}
    write_text(out_dir / f"{name}.json", json.dumps({"name": name, "description": description, "results": results},
                                                    indent=2) + "\n", force=True)
    return results


def _curve_name(codec: str, preset: str, bits: int | None, epochs: int | None, qat_epochs: int | None,
                options: dict | None = None) -> str:
    """Name of a NeRV/HNeRV curve (and of its JSON file): codec, preset, and the settings given beside
    it (architecture options as ``-time32``, ``-local16``, ``-affine16``, ``-residual``)."""
    arch = "".join(f"-{k.split('_')[0]}" + (str(v) if k != "residual" else "") for k, v in (options or {}).items() if v)
    return (f"{codec}-{preset}" + (f"-{bits}bit" if bits else "") + (f"-e{epochs}" if epochs else "")
            + (f"-qat{qat_epochs}" if qat_epochs is not None else "") + arch)


def run_video_eval(clip: Path, codecs: list[str], out_dir: Path, qualities: list[float] = (2, 3, 4, 5),
                   preset: str = "medium", sizes: list[str] | None = None, bits: list[int] | None = None,
                   epochs: int | None = None, qat_epochs: int | None = None, max_frames: int | None = None,
                   crop: tuple[int, int] | None = None, resize: tuple[int, int] | None = None,
                   checkpoint_dir: Path | None = None, device: str | None = None, anchor: str | None = "libx264",
                   progress: bool = True, arch_options: dict | None = None) -> dict:
    """Sweep the codecs over one clip and write JSON curves, BD tables and a plot into ``out_dir``.
    NeRV/HNeRV points: one per quality at ``preset`` (or per model size in ``sizes``), per bit depth
    in ``bits`` (default: the codec's); ``epochs`` and ``qat_epochs`` override the preset's;
    ``arch_options``: architecture options of the video codec (:data:`~ncodec.video.models.OPTIONS`)."""
    import ncodec
    from ncodec.video.io import read_video
    from ncodec.video.io import resize as resize_video

    unknown = [c for c in codecs if c not in NCODEC_CODECS and c not in CLASSICAL]
    if unknown:
        raise ValueError(f"unknown video codec {unknown[0]!r}: use {', '.join(NCODEC_CODECS + tuple(CLASSICAL))}")
    key = "size" if sizes else "quality"
    jobs = [(c, v, b) for c in codecs if c in NCODEC_CODECS for v in (sizes or qualities) for b in (bits or [None])]
    made = [c for c in codecs if c in CLASSICAL] + list(dict.fromkeys(
        _curve_name(c, preset, b, epochs, qat_epochs, arch_options) for c, _, b in jobs))
    if anchor is not None and anchor not in made:     # refuse before hours of fitting, not after
        raise ValueError(f"anchor {anchor!r} is not among this sweep's curves: {', '.join(made)}")
    jobs += [(c, crf, None) for c in codecs if c in CLASSICAL for crf in CLASSICAL[c][0]]
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    video = read_video(clip, max_frames=max_frames, crop=crop)
    if resize:
        video = resize_video(video, resize)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves, points = {}, {}
    bar = tqdm(jobs, unit="point", disable=not progress)
    for name, setting, b in bar:
        if name in CLASSICAL:
            bar.set_description(f"{name} CRF {setting}")
            points.setdefault(name, []).append(classical_point(video.frames, video.fps, name, setting))
            continue
        curve = _curve_name(name, preset, b, epochs, qat_epochs, arch_options)
        bar.set_description(f"{curve} {key} {setting}")
        given = {"bits": b, "embed_bits": b, "epochs": epochs, "qat_epochs": qat_epochs, **(arch_options or {})}
        options = {key: setting, "preset": preset, "progress": False,
                   **{k: v for k, v in given.items() if v is not None}}
        if checkpoint_dir is not None:
            options["checkpoint"] = str(Path(checkpoint_dir) / f"{Path(clip).stem}-{curve}-{key}{setting}.pt")
        points.setdefault(curve, []).append(ncodec_point(ncodec.load_codec(name, device), video, options))
    t, h, w = video.shape
    where = f"{Path(clip).name}, {t} frames {w}x{h}"
    for name, pts in points.items():
        if name in CLASSICAL:
            desc = f"{CLASSICAL[name][2]} (PyAV); {where}"
        else:
            desc = f"ncodec {name}: {key} {', '.join(str(v) for v in sizes or qualities)}; {where}"
        curves[name] = _write_curve(out_dir, name, desc, pts)
    summary = {"frames": t, "width": w, "height": h, "curves": curves, "bdrate": []}
    if anchor is not None:
        summary["bdrate"] = bd_table(curves, anchor)
        write_bd_table(summary["bdrate"], anchor, out_dir)
    plot_rd([out_dir / f"{n}.json" for n in curves], out_dir / "rd.png", title=where)
    return summary


def add_arguments(p) -> None:
    """Options of ``ncodec eval video``."""
    p.add_argument("clip", help="a video file, raw .yuv is not supported here, or a folder of frames")
    p.add_argument("--codecs", default="nerv,hnerv,libx264,libx265,libsvtav1", help="comma-separated")
    p.add_argument("--qualities", default="2,3,4,5", help="comma-separated qualities (1-6) for hnerv/nerv")
    p.add_argument("--preset", choices=["fast", "medium", "slow"], default="medium", help="hnerv/nerv fitting time")
    p.add_argument("--sizes", default=None, help="comma-separated model sizes (e.g. 0.1M,0.2M) instead of --qualities")
    p.add_argument("--bits", default=None, help="comma-separated weight/embedding bit depths (default: the codec's)")
    p.add_argument("--epochs", type=int, default=None, help="fit epochs (default: the preset's)")
    p.add_argument("--qat-epochs", type=int, default=None, help="quantisation-aware epochs (default: the preset's)")
    for flag, kwargs in ARCHITECTURE_OPTIONS:
        p.add_argument(flag, **kwargs, default=None)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--crop", default=None, help="centre crop WxH before coding (e.g. 1280x640)")
    p.add_argument("--resize", default=None, help="resample to WxH before coding (after any crop)")
    p.add_argument("--checkpoint-dir", default=None, help="resumable fits: one checkpoint per codec and setting here")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--anchor", default=None,
                   help="BD-rate reference curve (default: libx264 if swept, else the first classical codec, else "
                        "the first codec's curve)")
    p.add_argument("--out", default="results/video")


def _numbers(text: str | None, kind, flag: str) -> list | None:
    """A comma-separated option as a list of ``kind`` (None when the option was not given)."""
    if text is None:
        return None
    try:
        values = [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated numbers, not {text!r}") from None
    if not values:
        raise UsageError(f"{flag} must name at least one value")
    return values


def default_anchor(codecs: list[str], preset: str = "medium", bits: int | None = None, epochs: int | None = None,
                   qat_epochs: int | None = None, arch_options: dict | None = None) -> str:
    """The BD-rate anchor among ``codecs``: libx264, else the first classical codec, else the first
    codec's curve (with the given settings)."""
    names = [c if c in CLASSICAL else _curve_name(c, preset, bits, epochs, qat_epochs, arch_options) for c in codecs]
    return bdrate.default_anchor(names, CLASSICAL, "libx264")


def run(a) -> int:
    """``ncodec eval video``: sweep, write JSON, tables and plot, print the tables."""
    from ncodec.errors import check_input
    from ncodec.video.io import parse_wxh
    from ncodec.video.models import OPTIONS

    clip = check_input(a.clip, folder=Path(a.clip).is_dir())
    codecs = [c for c in a.codecs.split(",") if c]
    if not codecs:
        raise UsageError("--codecs must name at least one codec")
    crop = parse_wxh(a.crop, "--crop") if a.crop else None
    size = parse_wxh(a.resize, "--resize") if a.resize else None
    qualities, bits = _numbers(a.qualities, float, "--qualities"), _numbers(a.bits, int, "--bits")
    sizes = [s for s in a.sizes.split(",") if s] if a.sizes else None
    arch_options = {k: getattr(a, k) for k in OPTIONS if getattr(a, k) is not None}
    try:
        run_video_eval(clip, codecs, Path(a.out), qualities, a.preset, sizes, bits, a.epochs, a.qat_epochs,
                       a.max_frames, crop, size, Path(a.checkpoint_dir) if a.checkpoint_dir else None, a.device,
                       a.anchor or default_anchor(codecs, a.preset, bits and bits[0], a.epochs, a.qat_epochs,
                                                  arch_options), arch_options=arch_options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if (Path(a.out) / "bdrate.md").exists():
        print((Path(a.out) / "bdrate.md").read_text())
    return 0
