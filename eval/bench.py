"""``ncodec bench``: speed of the image codecs split into transform and entropy time, and
the range coder's overhead against the entropy model's ideal bit count, on real images."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .rd_image import find_images, read_image


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@torch.no_grad()
def _bench_compressai(net, images: dict, device: str) -> dict:
    """CompressAI's own compress/decompress (its rANS coder, fp32) on the same images."""
    from .metrics import psnr

    net = net.to(device)
    pixels = enc_s = dec_s = nbytes = 0
    psnrs = []
    for img in images.values():
        x = torch.from_numpy(img.copy()).to(device).permute(2, 0, 1)[None].float() / 255
        h, w = img.shape[:2]
        x = torch.nn.functional.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
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


def bench_image(folder: Path, models: list[str], quality: float = 3.0, device: str = "cpu", limit: int = 0,
                compressai: bool = False, precision: str | None = None) -> dict:
    """Per model: MP/s for encode and decode, time split, coded vs ideal bits, PSNR; with
    ``compressai``, the same model run through CompressAI's own path (factorized and hyperprior)."""
    import ncodec
    from ncodec.container import Container
    from ncodec.image.compressai_wrap import to_compressai

    from .metrics import psnr

    paths = find_images(folder)[: limit or None]
    images = {p.name: read_image(p) for p in paths}
    names = list(images)
    report = {"machine": machine(), "quality": quality, "device": device, "images": len(names), "models": {}}
    for model in models:
        codec = ncodec.load_codec(model, device=device, precision=precision)
        report["precision"] = codec.precision
        codec.decode(codec.encode(images[names[0]][:64, :64], quality))  # warm-up
        acc = {"pixels": 0, "enc_s": 0.0, "dec_s": 0.0, "enc_transform_s": 0.0, "enc_entropy_s": 0.0,
               "dec_transform_s": 0.0, "dec_entropy_s": 0.0, "coded_bits": 0, "ideal_bits": 0.0, "file_bits": 0,
               "psnr_sum": 0.0}
        for name in tqdm(names, desc=f"bench {model}", unit="img"):
            img = images[name]
            t0 = time.perf_counter()
            data = codec.encode(img, quality)
            t1 = time.perf_counter()
            enc = dict(codec.stats)
            rec = codec.decode(data)
            t2 = time.perf_counter()
            acc["psnr_sum"] += psnr(img, rec)
            acc["pixels"] += img.shape[0] * img.shape[1]
            acc["enc_s"] += t1 - t0
            acc["dec_s"] += t2 - t1
            acc["enc_transform_s"] += enc["transform"]
            acc["enc_entropy_s"] += enc["entropy"]
            acc["ideal_bits"] += enc["ideal_bits"]
            acc["dec_transform_s"] += codec.stats["transform"]
            acc["dec_entropy_s"] += codec.stats["entropy"]
            acc["file_bits"] += 8 * len(data)
            c = Container.from_bytes(data)
            acc["coded_bits"] += 8 * (len(c.sections["y"]) + len(c.sections.get("z", b"")))
        mp = acc["pixels"] / 1e6
        report["models"][model] = {
            "encode_MP_per_s": mp / acc["enc_s"], "decode_MP_per_s": mp / acc["dec_s"],
            "encode_entropy_share": acc["enc_entropy_s"] / acc["enc_s"],
            "decode_entropy_share": acc["dec_entropy_s"] / acc["dec_s"],
            "coder_overhead_pct": 100 * (acc["coded_bits"] / acc["ideal_bits"] - 1),
            "container_overhead_pct": 100 * (acc["file_bits"] / acc["coded_bits"] - 1),
            "bpp": acc["file_bits"] / acc["pixels"], "psnr": acc.pop("psnr_sum") / len(names), **acc}
        if compressai and codec.config.arch in ("factorized", "hyperprior"):
            report["models"][model]["compressai"] = _bench_compressai(to_compressai(codec, quality), images, device)
    return report


def format_report(report: dict) -> str:
    """Markdown tables of a :func:`bench_image` report."""
    lines = [f"machine: {json.dumps(report['machine'])}; quality {report['quality']}, {report['images']} images, "
             f"transforms in {report.get('precision')}",
             "| model | encode MP/s | decode MP/s | entropy share enc/dec | coder overhead | container overhead | bpp "
             "| PSNR dB |", "|---|---|---|---|---|---|---|---|"]
    for name, m in report["models"].items():
        lines.append(f"| {name} | {m['encode_MP_per_s']:.3f} | {m['decode_MP_per_s']:.3f} | "
                     f"{100 * m['encode_entropy_share']:.0f} % / {100 * m['decode_entropy_share']:.0f} % | "
                     f"{m['coder_overhead_pct']:+.4f} % | {m['container_overhead_pct']:+.2f} % | {m['bpp']:.4f} | "
                     f"{m['psnr']:.3f} |")
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
    return "\n".join(lines)
