"""Rate-distortion sweep of video codecs on one clip: ncodec's NeRV/HNeRV against x264, x265 and
SVT-AV1 through PyAV, on the same RGB frames and with the same metric code.

Per point: bpp (every byte of the .ncz file; for the classical codecs the bytes of their coded
packets, container overhead not counted), mean per-frame PSNR on RGB and on Y (BT.601, from the
RGB frames the same way for every codec), mean per-frame MS-SSIM, encoding seconds and decoding
frames per second.  One JSON per curve in CompressAI's layout, ``bdrate.md``/``.csv`` against an
anchor and a plot.  ``--huffman`` also measures, on every coded network, what Huffman coding the
very same quantised symbols would cost (``entropy.md``)."""
from __future__ import annotations

import heapq
import json
import math
import os
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
from skimage.color import rgb2ycbcr
from tqdm import tqdm

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


def huffman_bits(symbols: np.ndarray) -> int:
    """Bits of a Huffman code (built with heapq) for these symbols, code table not counted."""
    counts = list(Counter(symbols.ravel().tolist()).values())
    if len(counts) == 1:
        return len(symbols.ravel())
    heap = [(c, i, 0) for i, c in enumerate(counts)]       # (weight, tiebreak, cost so far)
    heapq.heapify(heap)
    total, tiebreak = 0, len(counts)
    while len(heap) > 1:
        c1, _, _ = heapq.heappop(heap)
        c2, _, _ = heapq.heappop(heap)
        total += c1 + c2          # every merge adds one bit to each symbol below it
        heapq.heappush(heap, (c1 + c2, tiebreak, 0))
        tiebreak += 1
    return total


def huffman_report(data: bytes) -> dict:
    """Sizes of one stream with its own entropy coding and with per-tensor Huffman codes instead
    (the same symbols, steps and header; Huffman tables free, ncodec's model parameters dropped)."""
    from ncodec.container import Container
    from ncodec.video.codec import read_tensors

    c = Container.from_bytes(data)
    tensors = read_tensors(c)
    huff = sum(huffman_bits(q.symbols) for q in tensors.values())
    hist_bytes = sum(q.model_bytes for q in tensors.values())
    huffman_bytes = len(data) - len(c.sections["symbols"]) - hist_bytes + math.ceil(huff / 8)
    return {"bytes": len(data), "symbols_bytes": len(c.sections["symbols"]), "model_bytes": hist_bytes,
            "huffman_bytes": huffman_bytes, "huffman_symbol_bytes": math.ceil(huff / 8),
            "saving_pct": 100 * (1 - len(data) / huffman_bytes)}


def ncodec_point(codec, video, options: dict) -> tuple[dict, bytes]:
    """Fit and code a clip with an ncodec video codec (public API), decode it, measure."""
    t, h, w = video.shape
    t0 = time.perf_counter()
    data = codec.encode(video, **options)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    point = {"size": options["size"], "bits": options.get("bits", 8), "bytes": len(data),
             "bpp": 8 * len(data) / (t * h * w),
             **clip_metrics(video.frames, out.frames), "encoding_time": t1 - t0, "decoding_time": t2 - t1,
             "decoding_fps": t / (t2 - t1)}
    return point, data


def _write_curve(out_dir: Path, name: str, description: str, points: list[dict]) -> dict:
    points = sorted(points, key=lambda p: p["bpp"])
    results = {k: [p[k] for p in points] for k in points[0]}
    (out_dir / f"{name}.json").write_text(json.dumps({"name": name, "description": description, "results": results},
                                                     indent=2) + "\n")
    return results


def _curve_name(codec: str, bits: int, qat_epochs: int) -> str:
    """Name of a NeRV/HNeRV curve (and of its JSON file): codec, bit depth, fine-tuning."""
    return f"{codec}-{bits}bit" + (f"-qat{qat_epochs}" if qat_epochs else "")


def run_video_eval(clip: Path, codecs: list[str], out_dir: Path, sizes: list[str], bits: list[int], epochs: int,
                   qat_epochs: int = 0, huffman: bool = False, max_frames: int | None = None,
                   crop: tuple[int, int] | None = None, resize: tuple[int, int] | None = None,
                   checkpoint_dir: Path | None = None, device: str | None = None, anchor: str | None = "libx264",
                   progress: bool = True) -> dict:
    """Sweep the codecs over one clip and write JSON curves, BD tables and a plot into ``out_dir``."""
    import ncodec
    from ncodec.video.io import read_video
    from ncodec.video.io import resize as resize_video

    unknown = [c for c in codecs if c not in NCODEC_CODECS and c not in CLASSICAL]
    if unknown:
        raise ValueError(f"unknown video codec {unknown[0]!r}: use {', '.join(NCODEC_CODECS + tuple(CLASSICAL))}")
    jobs = [(c, s, b, qat_epochs) for c in codecs if c in NCODEC_CODECS for s in sizes for b in bits]
    if huffman:     # the baseline: the same networks at 8 bits without fine-tuning, coded both ways
        jobs = [(c, s, 8, 0) for c in codecs if c in NCODEC_CODECS for s in sizes
                if (c, s, 8, 0) not in jobs] + jobs
    fitted = list(dict.fromkeys(_curve_name(c, b, q) for c, _, b, q in jobs))
    made = [c for c in codecs if c in CLASSICAL] + fitted + ([f"{n}-huffman" for n in fitted] if huffman else [])
    if anchor is not None and anchor not in made:     # refuse before hours of fitting, not after
        raise ValueError(f"anchor {anchor!r} is not among this sweep's curves: {', '.join(made)}")
    jobs += [(c, crf, None, 0) for c in codecs if c in CLASSICAL for crf in CLASSICAL[c][0]]
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    video = read_video(clip, max_frames=max_frames, crop=crop)
    if resize:
        video = resize_video(video, resize)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves, points, entropy = {}, {}, []
    bar = tqdm(jobs, unit="point", disable=not progress)
    for name, setting, b, qat in bar:
        bar.set_description(f"{name} {setting}" + (f" {b}-bit" if b else "") + (f" qat {qat}" if qat else ""))
        if name in CLASSICAL:
            points.setdefault(name, []).append(classical_point(video.frames, video.fps, name, setting))
            continue
        options = {"size": setting, "epochs": epochs, "bits": b, "embed_bits": b, "qat_epochs": qat,
                   "progress": False}
        if checkpoint_dir is not None:
            options["checkpoint"] = str(Path(checkpoint_dir) / f"{Path(clip).stem}-{name}-{setting}-e{epochs}.pt")
        point, data = ncodec_point(ncodec.load_codec(name, device), video, options)
        curve = _curve_name(name, b, qat)
        points.setdefault(curve, []).append(point)
        if huffman:
            report = huffman_report(data)
            entropy.append({"curve": curve, "arch": name, "size": setting, "bits": b, "qat_epochs": qat,
                            "psnr-rgb": point["psnr-rgb"], **report})
            points.setdefault(f"{curve}-huffman", []).append(
                {**point, "bytes": report["huffman_bytes"], "bpp": point["bpp"] * report["huffman_bytes"] / len(data)})
    t, h, w = video.shape
    where = f"{Path(clip).name}, {t} frames {w}x{h}"
    for name, pts in points.items():
        if name in CLASSICAL:
            desc = f"{CLASSICAL[name][2]} (PyAV); {where}"
        else:
            desc = f"ncodec {name}: {epochs} epochs, sizes {', '.join(sizes)}; {where}"
        curves[name] = _write_curve(out_dir, name, desc, pts)
    summary = {"frames": t, "width": w, "height": h, "curves": curves, "bdrate": []}
    if anchor is not None:
        summary["bdrate"] = bd_table(curves, anchor)
        write_bd_table(summary["bdrate"], anchor, out_dir)
    if entropy:
        summary["entropy"] = _write_entropy_table(entropy, out_dir)
    plot_rd([out_dir / f"{n}.json" for n in curves], out_dir / "rd.png", title=where)
    return summary


def equal_psnr_bytes(points: list[tuple[float, int]], target: float) -> float | None:
    """Bytes at PSNR ``target`` on the Pareto front of (PSNR, bytes) points, interpolating log-bytes
    linearly in PSNR; None when no point reaches the target."""
    front = []
    for p, b in sorted(points, key=lambda x: (x[1], -x[0])):
        if not front or p > front[-1][0]:
            front.append((p, b))
    if not front or target > front[-1][0]:
        return None
    if target <= front[0][0]:
        return float(front[0][1])
    ps, bs = zip(*front)
    return float(np.exp(np.interp(target, ps, np.log(bs))))


def _write_entropy_table(rows: list[dict], out_dir: Path) -> list[dict]:
    """``entropy.md``: per stream, own coding vs Huffman on the same symbols; then, per network, the
    bytes ncodec needs (any bit depth, with or without QAT) at the PSNR of 8-bit weights + Huffman."""
    md = ["Same quantised symbols: ncodec's per-tensor entropy models + range coder vs per-tensor Huffman "
          "(Huffman tables not counted).", "",
          "| curve | size | PSNR-RGB | ncodec bytes | Huffman bytes | saving |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['curve']} | {r['size']} | {r['psnr-rgb']:.2f} | {r['bytes']} | {r['huffman_bytes']} | "
                  f"{r['saving_pct']:.1f} % |")
    md += ["", "Equal PSNR on the same trained network: 8-bit weights + Huffman (as trained, or after the same "
           "QAT epochs at 8 bits) against ncodec at any bit depth, first with the same fine-tuning, then with any of "
           "the measured settings (log-bytes interpolated in PSNR along ncodec's Pareto front):", "",
           "| network | QAT epochs | 8-bit Huffman bytes | PSNR-RGB | ncodec, same fine-tuning | saving | "
           "ncodec, any setting | saving |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for base in (r for r in rows if r["bits"] == 8):
        same_net = [r for r in rows if (r["arch"], r["size"]) == (base["arch"], base["size"])]
        cells = []
        for pool in ([r for r in same_net if r["qat_epochs"] == base["qat_epochs"]], same_net):
            at = equal_psnr_bytes([(r["psnr-rgb"], r["bytes"]) for r in pool], base["psnr-rgb"])
            cells += ["n/a", "n/a"] if at is None else [str(round(at)), f"{100 * (1 - at / base['huffman_bytes']):.1f} %"]
        md.append(f"| {base['arch']} {base['size']} | {base['qat_epochs']} | {base['huffman_bytes']} | "
                  f"{base['psnr-rgb']:.2f} | {' | '.join(cells)} |")
    (out_dir / "entropy.md").write_text("\n".join(md) + "\n")
    (out_dir / "entropy.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def add_arguments(p) -> None:
    """Options of ``ncodec eval video``."""
    p.add_argument("clip", help="a video file, raw .yuv is not supported here, or a folder of frames")
    p.add_argument("--codecs", default="hnerv,nerv,libx264,libx265,libsvtav1", help="comma-separated")
    p.add_argument("--sizes", default="0.1M,0.2M,0.4M", help="comma-separated model sizes for hnerv/nerv")
    p.add_argument("--bits", default="8", help="comma-separated weight/embedding bit depths")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--qat-epochs", type=int, default=0)
    p.add_argument("--huffman", action="store_true", help="also measure Huffman coding of the same symbols")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--crop", default=None, help="centre crop WxH before coding (e.g. 1280x640)")
    p.add_argument("--resize", default=None, help="resample to WxH before coding (after any crop)")
    p.add_argument("--checkpoint-dir", default=None, help="resumable fits: one checkpoint per codec and size here")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--anchor", default="libx264")
    p.add_argument("--out", default="results/video")


def run(a) -> int:
    """``ncodec eval video``: sweep, write JSON, tables and plot, print the tables."""
    from ncodec.errors import UsageError
    from ncodec.video.io import parse_wxh

    crop = parse_wxh(a.crop, "--crop") if a.crop else None
    size = parse_wxh(a.resize, "--resize") if a.resize else None
    try:
        bits = [int(b) for b in a.bits.split(",") if b]
    except ValueError:
        raise UsageError(f"--bits must be comma-separated integers, not {a.bits!r}") from None
    try:
        run_video_eval(Path(a.clip), [c for c in a.codecs.split(",") if c], Path(a.out),
                       [s for s in a.sizes.split(",") if s], bits, a.epochs, a.qat_epochs, a.huffman, a.max_frames,
                       crop, size, Path(a.checkpoint_dir) if a.checkpoint_dir else None, a.device, a.anchor)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for table in ("bdrate.md", "entropy.md"):
        if (Path(a.out) / table).exists():
            print((Path(a.out) / table).read_text())
    return 0
