"""``ncodec bench``: speed of the image codecs split into transform and entropy time, and
the range coder's overhead against the entropy model's ideal bit count, on real images; speed of
the video codecs (NeRV/HNeRV fit time per epoch, decode fps) and of the audio codec (x real time),
each beside the classical codecs through PyAV, reported as ratios (x real time, x an anchor codec).

Everything is timed from outside: the image codecs' stages and the video decoder's are called one
by one, and the time inside the range coder is measured by wrapping its calls for the duration of
a stage."""
from __future__ import annotations

import functools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .rd_image import find_images, read_image

IMAGE_MODELS = ("factorized", "hyperprior", "slice")
VIDEO_CODECS = ("hnerv", "nerv", "libx264", "libx265", "libsvtav1")
AUDIO_CODECS = ("ncodec:mdct", "opus", "aac", "mp3")


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the numbers were measured on."""
    import av

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": _cpu_name(),
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "pyav": av.__version__}
    if hasattr(os, "getloadavg"):
        info["load_1min"] = round(os.getloadavg()[0], 2)     # other work on the machine while it was measured
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@torch.no_grad()
def _bench_compressai(net, images: dict, device: str) -> dict:
    """CompressAI's own compress/decompress (its rANS coder, fp32) on the same images."""
    from .metrics import psnr

    net = net.to(device)
    warm = net.compress(_padded_tensor(next(iter(images.values()))[:64, :64], device))  # warm-up, as ncodec's
    net.decompress(warm["strings"], warm["shape"])
    pixels = enc_s = dec_s = nbytes = 0
    psnrs = []
    for img in images.values():
        x = _padded_tensor(img, device)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        out = net.compress(x)
        t1 = time.perf_counter()
        x_hat = net.decompress(out["strings"], out["shape"])["x_hat"][0, :, :h, :w]
        t2 = time.perf_counter()
        rec = (x_hat.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        pixels, enc_s, dec_s = pixels + h * w, enc_s + t1 - t0, dec_s + t2 - t1
        nbytes += sum(len(s) for strings in out["strings"] for s in strings)
        psnrs.append(psnr(img, rec))
    return {"encode_MP_per_s": pixels / 1e6 / enc_s, "decode_MP_per_s": pixels / 1e6 / dec_s,
            "bpp": 8 * nbytes / pixels, "psnr": sum(psnrs) / len(psnrs)}


def _padded_tensor(img, device: str) -> torch.Tensor:
    from ncodec.image.codec import PAD

    h, w = img.shape[:2]
    x = torch.from_numpy(img.copy()).to(device).permute(2, 0, 1)[None].float() / 255
    return torch.nn.functional.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")


class _CoderClock:
    """Seconds spent in the range coder and symbols coded while it is active (``with clock:``): it
    wraps :class:`~ncodec.entropy.SymbolEncoder`'s ``encode`` and ``finish`` and
    :class:`~ncodec.entropy.SymbolDecoder`'s ``decode`` for the duration of the block."""

    def __init__(self):
        self.seconds, self.symbols = 0.0, 0

    def __enter__(self) -> "_CoderClock":
        from ncodec.entropy import SymbolDecoder, SymbolEncoder

        methods = ((SymbolEncoder, "encode"), (SymbolEncoder, "finish"), (SymbolDecoder, "decode"))
        self._saved = [(cls, name, cls.__dict__[name]) for cls, name in methods]
        for cls, name, method in self._saved:
            setattr(cls, name, self._timed(method, counts=name != "finish"))
        return self

    def __exit__(self, *exc) -> None:
        for cls, name, method in self._saved:
            setattr(cls, name, method)

    def _timed(self, method, counts: bool):
        """``method`` adding its wall time (and, if ``counts``, the size of its first argument: the
        symbols or their table indices) to this clock."""
        @functools.wraps(method)
        def wrapper(coder, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(coder, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.symbols += np.size(args[0]) if counts else 0
        return wrapper


def _sync(device: str) -> None:
    """Wait for the device's queued work, so that a stage's time includes it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _encode_stages(codec, img, quality: float, device: str, acc: dict) -> tuple[bytes, float]:
    """Encode an RGB image stage by stage as :meth:`ImageCodec.encode` does, adding each stage's
    seconds to ``acc`` (``enc_transform_s``, ``enc_entropy_s`` and within it ``enc_coding_s``,
    ``enc_container_s``) and the symbols coded; returns the stream and the model's ideal bits."""
    clock = _CoderClock()
    t0 = time.perf_counter()
    y = codec.analyse(_padded_tensor(img, device), quality)
    _sync(device)
    t1 = time.perf_counter()
    with clock:
        sections, ideal_bits = codec.latent.compress(y, level=int(quality) - 1)
    t2 = time.perf_counter()
    data = codec.pack(sections, quality, img, img.shape[2])
    t3 = time.perf_counter()
    stages = {"transform": t1 - t0, "entropy": t2 - t1, "coding": clock.seconds, "container": t3 - t2}
    for key, seconds in stages.items():
        acc[f"enc_{key}_s"] += seconds
    acc["symbols"] += clock.symbols
    return data, ideal_bits


def _decode_stages(codec, data: bytes, quality: float, device: str, acc: dict):
    """Decode a stream stage by stage as :meth:`ImageCodec.decode` does, adding each stage's seconds
    to ``acc`` (``dec_container_s``, ``dec_entropy_s`` and within it ``dec_coding_s``,
    ``dec_transform_s``); returns the image."""
    from ncodec.container import Container

    clock = _CoderClock()
    t0 = time.perf_counter()
    c = Container.from_bytes(data)
    h, w = c.require("h"), c.require("w")
    t1 = time.perf_counter()
    with clock:
        y_hat = codec.latent.decompress(c.sections, codec.latent_shape(h, w), level=int(quality) - 1)
        _sync(device)
    t2 = time.perf_counter()
    rec = codec.synthesise(y_hat, quality, h, w)
    t3 = time.perf_counter()
    stages = {"container": t1 - t0, "entropy": t2 - t1, "coding": clock.seconds, "transform": t3 - t2}
    for key, seconds in stages.items():
        acc[f"dec_{key}_s"] += seconds
    return rec


STAGES = ("transform", "entropy_parameters", "coding", "container")


def _shares(acc: dict, side: str) -> dict:
    """Each stage's share of one side's time (entropy parameters: the entropy stage less its range
    coding); they add up to 1."""
    seconds = {"transform": acc[f"{side}_transform_s"], "coding": acc[f"{side}_coding_s"],
               "entropy_parameters": acc[f"{side}_entropy_s"] - acc[f"{side}_coding_s"],
               "container": acc[f"{side}_container_s"]}
    return {stage: seconds[stage] / acc[f"{side}_s"] for stage in STAGES}


def _timed(acc: dict, key: str, run):
    t0 = time.perf_counter()
    out = run()
    acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0
    return out


@torch.no_grad()
def _bench_compressai_coder(net, images: dict, device: str) -> dict:
    """CompressAI's entropy coders alone (``compress``/``decompress`` of its EntropyBottleneck and
    GaussianConditional, rANS with its Python-side marshalling) on the latents of the same images,
    and their coded size against the ideal -sum(log2 p) of the continuous model they code with."""
    acc = {"symbols": 0, "coded_bits": 0, "ideal_bits": 0.0}
    eb, hyper = net.entropy_bottleneck, hasattr(net, "h_a")
    for img in images.values():
        y = net.g_a(_padded_tensor(img, device))
        z = net.h_a(y) if hyper else y          # what the EntropyBottleneck codes
        strings = _timed(acc, "enc_s", lambda: eb.compress(z))
        z_hat = _timed(acc, "dec_s", lambda: eb.decompress(strings, z.shape[-2:]))
        acc["coded_bits"] += 8 * sum(map(len, strings))
        acc["ideal_bits"] += float(-torch.log2(eb(z, training=False)[1]).sum())
        acc["symbols"] += z.numel()
        if hyper:
            gc = net.gaussian_conditional
            scales, means = net.h_s(z_hat).chunk(2, dim=1)
            indexes = gc.build_indexes(scales)
            strings = _timed(acc, "enc_s", lambda: gc.compress(y, indexes, means=means))
            _timed(acc, "dec_s", lambda: gc.decompress(strings, indexes, means=means))
            acc["coded_bits"] += 8 * sum(map(len, strings))
            acc["ideal_bits"] += float(-torch.log2(gc(y, scales, means, training=False)[1]).sum())
            acc["symbols"] += y.numel()
    return _coder_summary(acc)


def _coder_summary(acc: dict) -> dict:
    return {"encode_Msym_per_s": acc["symbols"] / 1e6 / acc["enc_s"], "decode_Msym_per_s": acc["symbols"] / 1e6 / acc["dec_s"],
            "overhead_pct": 100 * (acc["coded_bits"] / acc["ideal_bits"] - 1), "symbols": acc["symbols"]}


def _bench_pillow(name: str, images: dict, target_bpp: dict) -> dict:
    """A Pillow codec timed on the same images, each at the quality whose bpp is nearest to
    ``target_bpp[image]`` (found by bisection on the quality)."""
    from .classical import get_codec
    from .metrics import psnr

    codec = get_codec(name)
    lo_q, hi_q = (1, 95) if name == "jpeg" else (0, 100)
    acc = {"pixels": 0, "enc_s": 0.0, "dec_s": 0.0, "bits": 0, "psnr_sum": 0.0}
    for key, img in images.items():
        pixels = img.shape[0] * img.shape[1]
        sizes = {}

        def bpp(q):
            if q not in sizes:
                sizes[q] = 8 * len(codec.encode(img, q)) / pixels
            return sizes[q]

        lo, hi = lo_q, hi_q
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if bpp(mid) < target_bpp[key] else (lo, mid)
        q = min((lo, hi), key=lambda v: abs(bpp(v) - target_bpp[key]))
        data = _timed(acc, "enc_s", lambda: codec.encode(img, q))
        rec = _timed(acc, "dec_s", lambda: codec.decode(data))
        acc["pixels"] += pixels
        acc["bits"] += 8 * len(data)
        acc["psnr_sum"] += psnr(img, rec)
    mp = acc["pixels"] / 1e6
    return {"encode_MP_per_s": mp / acc["enc_s"], "decode_MP_per_s": mp / acc["dec_s"],
            "bpp": acc["bits"] / acc["pixels"], "psnr": acc["psnr_sum"] / len(images)}


def bench_image(folder: Path, models=IMAGE_MODELS, quality: float = 3.0, device: str = "cpu", limit: int = 0,
                compressai: bool = False, precision: str | None = None, classical=("avif", "webp"),
                compile: bool = False) -> dict:
    """Per model: MP/s for encode and decode, time split into transforms, entropy parameters, range
    coding and container work, coded vs ideal bits, PSNR; with ``compressai``, the same model run through
    CompressAI's own path (factorized and hyperprior), whole and its entropy coders alone; each of
    the ``classical`` Pillow codecs at the bpp of the first model, image by image. With
    ``compile`` the transforms run through ``torch.compile``, compiled for every image size
    before the timing starts (those seconds are reported apart, as ``compile_s``)."""
    import ncodec
    from ncodec.container import Container
    from ncodec.image.compressai_wrap import to_compressai

    from .metrics import psnr

    paths = find_images(folder)[: limit or None]
    images = {p.name: read_image(p) for p in paths}
    names = list(images)
    report = {"machine": machine(), "quality": quality, "device": device, "images": len(names), "models": {},
              "classical": {}}
    first_bpp = {}
    for model in models:
        codec = ncodec.load_codec(model, device=device, precision=precision, compile=compile)
        report["precision"], report["compiled"] = codec.precision, codec.compiled
        t0 = time.perf_counter()
        warm_ups = {img.shape: img for img in images.values()}.values() if compile else [images[names[0]][:64, :64]]
        for img in warm_ups:
            codec.decode(codec.encode(img, quality))
        compile_s = time.perf_counter() - t0 if compile else 0.0
        acc = {"pixels": 0, "coded_bits": 0, "ideal_bits": 0.0, "file_bits": 0, "symbols": 0, "psnr_sum": 0.0,
               **{f"{side}_{key}_s": 0.0 for side in ("enc", "dec") for key in ("transform", "entropy", "coding",
                                                                                   "container")}}
        for name in tqdm(names, desc=f"bench {model}", unit="img"):
            img = images[name]
            data, ideal_bits = _encode_stages(codec, img, float(quality), device, acc)
            rec = _decode_stages(codec, data, float(quality), device, acc)
            pixels = img.shape[0] * img.shape[1]
            acc["psnr_sum"] += psnr(img, rec)
            acc["pixels"] += pixels
            acc["ideal_bits"] += ideal_bits
            acc["file_bits"] += 8 * len(data)
            c = Container.from_bytes(data)
            acc["coded_bits"] += 8 * (len(c.sections["y"]) + len(c.sections.get("z", b"")))
            if model == models[0]:
                first_bpp[name] = 8 * len(data) / pixels
        for side in ("enc", "dec"):
            acc[f"{side}_s"] = sum(acc[f"{side}_{key}_s"] for key in ("transform", "entropy", "container"))
        mp = acc["pixels"] / 1e6
        row = {"encode_MP_per_s": mp / acc["enc_s"], "decode_MP_per_s": mp / acc["dec_s"],
               "coder": _coder_summary({"symbols": acc["symbols"], "enc_s": acc["enc_coding_s"],
                                        "dec_s": acc["dec_coding_s"], "coded_bits": acc["coded_bits"],
                                        "ideal_bits": acc["ideal_bits"]}),
               "container_overhead_pct": 100 * (acc["file_bits"] / acc["coded_bits"] - 1),
               "bpp": acc["file_bits"] / acc["pixels"], "psnr": acc.pop("psnr_sum") / len(names),
               "compile_s": compile_s, **acc}
        for side in ("enc", "dec"):
            row[f"{side}_shares"] = _shares(acc, side)
        if compressai and codec.config.arch in ("factorized", "hyperprior"):
            twin = to_compressai(codec, quality)
            row["compressai"] = _bench_compressai(twin, images, device)
            row["compressai"]["coder"] = _bench_compressai_coder(twin, images, device)
        report["models"][model] = row
    for name in classical:
        report["classical"][name] = _bench_pillow(name, images, first_bpp)
    report["classical_target"] = models[0]
    return report


def format_report(report: dict) -> str:
    """Markdown tables of a :func:`bench_image` report."""
    lines = [f"machine: {json.dumps(report['machine'])}; quality {report['quality']}, {report['images']} images, "
             f"transforms in {report.get('precision')}" + (", compiled" if report.get("compiled") else ""),
             "| model | encode MP/s | decode MP/s | encode: transform / entropy parameters / coding / container | "
             "decode: transform / entropy parameters / coding / container | coder overhead | container overhead | bpp "
             "| PSNR dB |", "|---|---|---|---|---|---|---|---|---|"]
    share = lambda d: " / ".join(f"{100 * d[k]:.0f} %" for k in STAGES)
    for name, m in report["models"].items():
        lines.append(f"| {name} | {m['encode_MP_per_s']:.3f} | {m['decode_MP_per_s']:.3f} | {share(m['enc_shares'])} | "
                     f"{share(m['dec_shares'])} | {m['coder']['overhead_pct']:+.4f} % | "
                     f"{m['container_overhead_pct']:+.2f} % | {m['bpp']:.4f} | {m['psnr']:.3f} |")
    if report.get("classical"):
        lines += ["", f"Pillow codecs on the same images, each at the bpp of {report['classical_target']} image by image:",
                  "| codec | encode MP/s | decode MP/s | bpp | PSNR dB |", "|---|---|---|---|---|"]
        for name, c in report["classical"].items():
            lines.append(f"| {name} | {c['encode_MP_per_s']:.3f} | {c['decode_MP_per_s']:.3f} | {c['bpp']:.4f} | "
                         f"{c['psnr']:.3f} |")
    twins = {n: m for n, m in report["models"].items() if "compressai" in m}
    if twins:
        lines += ["", "Same model, same weights through CompressAI's own compress/decompress (rANS, fp32):",
                  "| model | CompressAI enc / dec MP/s | ncodec enc / dec MP/s | speed-up enc / dec | bpp CompressAI / ncodec "
                  "| PSNR CompressAI / ncodec |", "|---|---|---|---|---|---|"]
        for name, m in twins.items():
            c = m["compressai"]
            lines.append(f"| {name} | {c['encode_MP_per_s']:.3f} / {c['decode_MP_per_s']:.3f} | "
                         f"{m['encode_MP_per_s']:.3f} / {m['decode_MP_per_s']:.3f} | "
                         f"{m['encode_MP_per_s'] / c['encode_MP_per_s']:.2f}x / "
                         f"{m['decode_MP_per_s'] / c['decode_MP_per_s']:.2f}x | {c['bpp']:.4f} / {m['bpp']:.4f} | "
                         f"{c['psnr']:.3f} / {m['psnr']:.3f} |")
        lines += ["", "Entropy coders alone on the same images' latents (ncodec: constriction range coder over "
                  "its exact tables; CompressAI: rANS over its CDFs), overhead against each one's ideal bits:",
                  "| model | symbols | ncodec enc / dec Msym/s | CompressAI enc / dec Msym/s | speed-up enc / dec "
                  "| overhead ncodec / CompressAI |", "|---|---|---|---|---|---|"]
        for name, m in twins.items():
            n, c = m["coder"], m["compressai"]["coder"]
            lines.append(f"| {name} | {n['symbols']:,} | {n['encode_Msym_per_s']:.2f} / {n['decode_Msym_per_s']:.2f} | "
                         f"{c['encode_Msym_per_s']:.2f} / {c['decode_Msym_per_s']:.2f} | "
                         f"{n['encode_Msym_per_s'] / c['encode_Msym_per_s']:.1f}x / "
                         f"{n['decode_Msym_per_s'] / c['decode_Msym_per_s']:.1f}x | "
                         f"{n['overhead_pct']:+.3f} % / {c['overhead_pct']:+.3f} % |")
    return "\n".join(lines)


def devices(device: str | None) -> list[str]:
    """The device asked for, else the CPU and, when present, the GPU."""
    if device:
        return [device]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _add_ratios(rows: list[dict], anchor: str, keys: tuple[str, ...]) -> None:
    """Each row's ``key`` divided by the anchor codec's (on the CPU) as ``key_vs_anchor``; none without the anchor."""
    ref = next((r for r in rows if r["codec"] == anchor and r["device"] == "cpu"), None)
    if ref is None:
        return
    for r in rows:
        for key in keys:
            r[f"{key}_vs_anchor"] = r[key] / ref[key]


def _decode_video_stages(codec, data: bytes) -> tuple[object, dict]:
    """Decode a video stream stage by stage as :meth:`VideoCodec.decode` does; returns the clip and
    each stage's seconds (``container``, ``entropy``: the tensors' range decoding, ``synthesis``)."""
    from ncodec.container import Container
    from ncodec.video.codec import read_tensors

    t0 = time.perf_counter()
    c = Container.from_bytes(data)
    t1 = time.perf_counter()
    coded = read_tensors(c)
    t2 = time.perf_counter()
    video = codec.synthesize_clip(c, coded)     # ends copying the frames to the CPU: nothing left queued
    t3 = time.perf_counter()
    return video, {"container": t1 - t0, "entropy": t2 - t1, "synthesis": t3 - t2}


def _bench_inr(name: str, device: str, video, size: str, epochs: int, repeats: int) -> dict:
    """Fit and code the clip with NeRV/HNeRV (public API), timing the calls: fit time per epoch
    (the encode: fit, quantisation and coding), and decode speed and its entropy decoding share
    from the fastest of ``repeats`` decodes, stage by stage."""
    import ncodec
    from ncodec.container import Container

    from .rd_video import clip_metrics

    t, h, w = video.shape
    codec = ncodec.load_codec(name, device)
    t0 = time.perf_counter()
    data = codec.encode(video, size=size, epochs=epochs, qat_epochs=0, progress=False)
    encode_s = time.perf_counter() - t0
    params = Container.from_bytes(data).fields["params"]
    out, stages = _decode_video_stages(codec, data)
    for _ in range(repeats - 1):
        stages = min(stages, _decode_video_stages(codec, data)[1], key=lambda s: sum(s.values()))
    decode_s = sum(stages.values())
    return {"setting": f"{size} ({params} params)", "params": params, "bytes": len(data),
            "bpp": 8 * len(data) / (t * h * w), "psnr-rgb": clip_metrics(video.frames, out.frames)["psnr-rgb"],
            "encode_s": encode_s, "s_per_epoch": encode_s / epochs, "s_per_epoch_per_frame": encode_s / epochs / t,
            "decode_s": decode_s, "decode_fps": t / decode_s,
            "decode_entropy_share": stages["entropy"] / (stages["entropy"] + stages["synthesis"])}


def _bench_classical_video(name: str, video, repeats: int) -> dict:
    """A PyAV encoder at the middle CRF of its eval sweep (through rd_video), fastest of ``repeats`` runs."""
    from .rd_video import CLASSICAL, classical_point

    crfs = CLASSICAL[name][0]
    points = [classical_point(video.frames, video.fps, name, crfs[len(crfs) // 2]) for _ in range(max(1, repeats))]
    best = min(points, key=lambda p: p["decoding_time"])
    return {"setting": f"CRF {best['crf']}", "crf": best["crf"], "bytes": best["bytes"], "bpp": best["bpp"],
            "psnr-rgb": best["psnr-rgb"], "encode_s": min(p["encoding_time"] for p in points),
            "decode_s": best["decoding_time"], "decode_fps": best["decoding_fps"]}


def bench_video(clip: Path, codecs=VIDEO_CODECS, size: str = "0.1M", epochs: int = 3, max_frames: int | None = 120,
                device: str | None = None, repeats: int = 3, anchor: str = "libx264", progress: bool = True) -> dict:
    """Per NeRV/HNeRV and device: fit seconds per epoch (and per frame), decode fps; per classical codec (CPU):
    encode and decode speed; every speed also as x real time, and decode fps against ``anchor``'s.
    ``max_frames`` 0 or None: the whole clip."""
    from ncodec.video.codec import DEFAULT_PRESET, PRESETS
    from ncodec.video.io import read_video

    from .rd_video import CLASSICAL, NCODEC_CODECS

    unknown = [c for c in codecs if c not in NCODEC_CODECS and c not in CLASSICAL]
    if unknown:
        raise ValueError(f"unknown video codec {unknown[0]!r}: use {', '.join(NCODEC_CODECS + tuple(CLASSICAL))}")
    video = read_video(clip, max_frames=max_frames or None)
    t, h, w = video.shape
    seconds = t / float(video.fps)
    jobs = [(c, d) for c in codecs if c in NCODEC_CODECS for d in devices(device)]
    jobs += [(c, "cpu") for c in codecs if c in CLASSICAL]
    preset = PRESETS[DEFAULT_PRESET]
    full_epochs = {c: preset.epochs(c) + preset.qat_epochs for c in NCODEC_CODECS}   # what a default encode fits
    rows = []
    for name, dev in tqdm(jobs, desc="bench video", unit="codec", disable=not progress, dynamic_ncols=True):
        if name in NCODEC_CODECS:
            row = _bench_inr(name, dev, video, size, epochs, repeats)
            full = row["s_per_epoch"] * full_epochs[name]
        else:
            row = _bench_classical_video(name, video, repeats)
            full = row["encode_s"]
        rows.append({"codec": name, "device": dev, **row, "encode_realtime": seconds / full,
                     "decode_realtime": row["decode_fps"] * seconds / t})
    _add_ratios(rows, anchor, ("decode_fps",))
    return {"machine": machine(), "modality": "video", "clip": Path(clip).name, "frames": t, "width": w, "height": h,
            "fps": float(video.fps), "size": size, "epochs": epochs, "full_epochs": full_epochs,
            "repeats": repeats, "anchor": anchor, "codecs": rows}


def _audio_runners(codecs, device: str | None) -> list[tuple[str, str, object]]:
    """(name, device, runner) per codec, from rd_audio: ncodec codecs on every device, PyAV ones on the CPU."""
    from .rd_audio import load_runners

    out = []
    for c in codecs:
        for dev in devices(device) if c.startswith("ncodec:") else ["cpu"]:
            ((name, runner),) = load_runners([c], dev).items()
            out.append((name, dev, runner))
    return out


def bench_audio(source: Path, codecs=AUDIO_CODECS, kbps: float = 24.0, seconds: float = 20.0,
                device: str | None = None, anchor: str = "opus", progress: bool = True) -> dict:
    """Per codec (ncodec ones on each device), at one target bitrate over the first ``seconds`` of a file (or of
    every file in a folder): encode and decode speed as x real time and against ``anchor``'s, real kbps, SI-SDR."""
    from ncodec.audio.io import read_audio

    from .rd_audio import find_audio, measure

    source = Path(source)
    paths = [p for group in find_audio(source).values() for p in group] if source.is_dir() else [source]
    if not paths:
        raise ValueError(f"no audio files under {source}")
    clips = {}
    for p in paths:
        x, rate = read_audio(p)
        name = str(p.relative_to(source)) if source.is_dir() else p.name
        clips[name] = (x[:, :int(seconds * rate)] if seconds else x, rate)
    total = sum(x.shape[1] / rate for x, rate in clips.values())
    runners = _audio_runners(codecs, device)
    rows = []
    bar = tqdm(total=len(runners) * len(clips), desc="bench audio", unit="run", disable=not progress,
               dynamic_ncols=True)
    for name, dev, runner in runners:
        x, rate = next(iter(clips.values()))
        runner.decode(runner.encode(x[:, :rate], rate, kbps), rate, len(x))    # warm-up on one second
        points = []
        for x, rate in clips.values():
            points.append(measure(runner, x, rate, kbps, "all", False, set()))
            bar.update(1)
        enc, dec = sum(p["encoding_time"] for p in points), sum(p["decoding_time"] for p in points)
        rows.append({"codec": name, "device": dev, "kbps": 8 * sum(p["bytes"] for p in points) / total / 1000,
                     "si-sdr": sum(p["si-sdr"] for p in points) / len(points),
                     "mel-distance": sum(p["mel-distance"] for p in points) / len(points), "encode_s": enc,
                     "decode_s": dec, "encode_realtime": total / enc, "decode_realtime": total / dec})
    bar.close()
    _add_ratios(rows, anchor, ("encode_realtime", "decode_realtime"))
    return {"machine": machine(), "modality": "audio", "files": list(clips), "seconds": total, "target_kbps": kbps,
            "anchor": anchor, "codecs": rows}


def _num(v: float | None, unit: str = "") -> str:
    """Three significant digits (thousands written out) and ``unit``; '-' for a missing value."""
    if v is None:
        return "-"
    return (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}") + unit


def _md_table(header: list[str], rows: list[list[str]], text_columns: int) -> list[str]:
    """Markdown table lines: the first ``text_columns`` left-aligned, the numbers right-aligned."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * text_columns + "---:|" * (len(header) - text_columns),
            *("| " + " | ".join(r) + " |" for r in rows)]


def format_video_report(report: dict) -> str:
    """Markdown table of a :func:`bench_video` report."""
    fits = ", ".join(f"{c} {n} epochs" for c, n in report["full_epochs"].items())
    lines = [f"machine: {json.dumps(report['machine'])}",
             (f"{report['clip']}: {report['frames']} frames {report['width']}x{report['height']} at "
              f"{report['fps']:g} fps; NeRV/HNeRV fitted for {report['epochs']} epochs (timing only; their encode x "
              f"real time is projected to a default fit: {fits}); classical codecs at the middle CRF of "
              f"`ncodec eval video`; decode speeds are the fastest of {report['repeats']} runs."), ""]
    rows = []
    for r in report["codecs"]:
        per_frame = r.get("s_per_epoch_per_frame")
        rows.append([r["codec"], r["device"], r["setting"], _num(r.get("s_per_epoch")),
                     _num(per_frame and 1000 * per_frame), _num(r["encode_realtime"], "x"), _num(r["decode_fps"]),
                     _num(r["decode_realtime"], "x"), _num(r.get("decode_fps_vs_anchor"), "x")])
    lines += _md_table(["codec", "device", "setting", "encode s/epoch", "ms/epoch/frame", "encode x real time",
                        "decode fps", "decode x real time", f"decode fps vs {report['anchor']}"], rows, 3)
    return "\n".join(lines)


def format_audio_report(report: dict) -> str:
    """Markdown table of a :func:`bench_audio` report."""
    lines = [f"machine: {json.dumps(report['machine'])}",
             (f"{len(report['files'])} file(s), {report['seconds']:.1f} s of audio ({', '.join(report['files'])}); "
              f"target {report['target_kbps']:g} kbps."), ""]
    rows = [[r["codec"], r["device"], f"{r['kbps']:.1f}", f"{r['si-sdr']:.2f}", _num(r["encode_realtime"], "x"),
             _num(r["decode_realtime"], "x"), _num(r.get("encode_realtime_vs_anchor"), "x"),
             _num(r.get("decode_realtime_vs_anchor"), "x")] for r in report["codecs"]]
    lines += _md_table(["codec", "device", "kbps", "SI-SDR dB", "encode x real time", "decode x real time",
                        f"encode speed vs {report['anchor']}", f"decode speed vs {report['anchor']}"], rows, 2)
    return "\n".join(lines)
