"""Lossless image benchmarks: every codec must give back every image exactly, and is measured in
bits per sub-pixel (bpsp: 8 x bytes / (height x width x channels)) and seconds per image.

=========  =============================================================
name       settings
=========  =============================================================
png        Pillow PNG, ``optimize=True``
webp       libwebp lossless, ``quality=100``, ``method=6``
jpeg2000   OpenJPEG, reversible 5/3 wavelet with colour transform
jxl        libjxl lossless via the pillow-jxl-plugin package, effort 7
=========  =============================================================

``ncodec:NAME`` and ``ncodec:NAME+PRESET`` reach ncodec's codecs through the public API, as the
RD sweep does (:mod:`ncodec.eval.rd_image`). Classical codecs run in worker processes, ncodec's
in this process. Writes one JSON per codec (every image's row and the totals) and ``lossless.md``.
"""
from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import InputError, NcodecError, UsageError, check_input
from ..fileio import write_text
from ..image import io as image_io
from .classical import CodecUnavailable, PillowCodec, _jxl_missing, _pillow_missing
from .rd_image import NCODEC_PREFIX, _describe, _ncodec_codec, find_images

# name -> (Pillow format, save options, settings, why unavailable or None)
_CODECS: dict[str, tuple] = {
    "png": ("PNG", {"optimize": True}, "optimize", _pillow_missing("zlib", "png")),
    "webp": ("WEBP", {"lossless": True, "quality": 100, "method": 6}, "lossless, method 6",
             _pillow_missing("webp", "webp")),
    "jpeg2000": ("JPEG2000", {"irreversible": False, "mct": 1}, "OpenJPEG, reversible 5/3 wavelet, colour transform",
                 _pillow_missing("jpg_2000", "jpeg2000")),
    "jxl": ("JXL", {"lossless": True, "effort": 7}, "pillow-jxl-plugin, lossless, effort 7", _jxl_missing),
}
LOSSLESS_CODECS = tuple(_CODECS)
DEFAULT_CODECS = (*LOSSLESS_CODECS, NCODEC_PREFIX + "lossless")
CHANNELS = 3                # the benchmark measures RGB images
TABLE = "lossless.md"


class NotLosslessError(NcodecError):
    """A codec that did not give back the exact image."""


def get_codec(name: str) -> PillowCodec:
    """The lossless classical codec ``name``; raises CodecUnavailable if its library is missing."""
    fmt, options, settings, missing = _CODECS[name]
    reason = missing()
    if reason is not None:
        raise CodecUnavailable(reason)
    return PillowCodec(name, fmt, [], lambda _quality: options, settings)


def load_codecs(names: list[str]) -> dict[str, object]:
    """Codec objects by name (the classical lossless codecs, ``ncodec:NAME``, ``ncodec:NAME+PRESET``);
    fails before any work on an unknown or unavailable one."""
    out = {}
    for name in names:
        if name in _CODECS:
            out[name] = get_codec(name)
        elif name.startswith(NCODEC_PREFIX) and name != NCODEC_PREFIX + "*":
            out[name] = _ncodec_codec(name)
        else:
            raise ValueError(f"unknown lossless codec {name!r}: use one of {', '.join(LOSSLESS_CODECS)} "
                             f"or {NCODEC_PREFIX}NAME")
    return out


def default_codecs() -> list[str]:
    """DEFAULT_CODECS less those this installation lacks, each skipped with a one-line note on stderr."""
    import ncodec

    names = []
    for name in DEFAULT_CODECS:
        if name.startswith(NCODEC_PREFIX):
            model = name[len(NCODEC_PREFIX):]
            reason = None if model in ncodec.list_codecs(modality="image") else f"this ncodec has no codec {model!r}"
        else:
            reason = _CODECS[name][3]()
        if reason is None:
            names.append(name)
        else:
            print(f"note: skipping {name}: {reason}", file=sys.stderr)
    return names


def read_rgb(path: Path) -> np.ndarray:
    """An RGB image file as read by ncodec's reader (upright, uint8), untouched; InputError for
    another channel layout (grey, alpha)."""
    image = image_io.read_image(path)
    if image.shape[2] != CHANNELS:
        raise InputError(f"{Path(path).name} has {image.shape[2]} channels: the lossless benchmark measures RGB images")
    return image


def measure(name: str, codec, image_name: str, image: np.ndarray) -> dict:
    """Encode and decode one image: bytes, bpsp, seconds; NotLosslessError unless it comes back exactly."""
    t0 = time.perf_counter()
    data = codec.encode(image, quality=None)      # quality None: the codec's default, as in ncodec.encode
    t1 = time.perf_counter()
    out = np.asarray(codec.decode(data))
    t2 = time.perf_counter()
    if out.shape != image.shape or out.dtype != image.dtype:
        raise NotLosslessError(f"{name} decoded {image_name} as {out.dtype} {out.shape}, "
                               f"not {image.dtype} {image.shape}")
    if not np.array_equal(out, image):
        diff = np.abs(out.astype(np.int64) - image)
        raise NotLosslessError(f"{name} did not decode {image_name} exactly: {np.count_nonzero(diff)} sub-pixels "
                               f"differ, by up to {diff.max()}")
    return {"bytes": len(data), "bpsp": 8 * len(data) / image.size, "encoding_time": t1 - t0,
            "decoding_time": t2 - t1}


def _classical_job(name: str, image_name: str, image: np.ndarray) -> dict:
    return measure(name, get_codec(name), image_name, image)


def totals(rows: list[dict]) -> dict:
    """bpsp over all images (total bits / total sub-pixels) and mean seconds per image."""
    subpixels = sum(r["width"] * r["height"] * CHANNELS for r in rows)
    nbytes = sum(r["bytes"] for r in rows)
    return {"images": len(rows), "bytes": nbytes, "subpixels": subpixels, "bpsp": 8 * nbytes / subpixels,
            "encoding_time": float(np.mean([r["encoding_time"] for r in rows])),
            "decoding_time": float(np.mean([r["decoding_time"] for r in rows]))}


def write_table(results: dict[str, dict], descriptions: dict[str, str], heading: str, out_dir: Path) -> str:
    """Write ``lossless.md`` (codec, bpsp, against PNG, seconds per image; best first) into out_dir; its text."""
    png = results.get("png", {}).get("bpsp")
    md = [heading, "", "| codec | bpsp | vs PNG (%) | encode (s/image) | decode (s/image) |",
          "|---|---:|---:|---:|---:|"]
    for name, t in sorted(results.items(), key=lambda item: item[1]["bpsp"]):
        vs_png = f"{100 * (t['bpsp'] / png - 1):+.1f}" if png else "n/a"
        md.append(f"| {name} | {t['bpsp']:.4f} | {vs_png} | {t['encoding_time']:.3f} | {t['decoding_time']:.3f} |")
    md += [""] + [f"- {name}: {descriptions[name]}" for name in results]
    text = "\n".join(md) + "\n"
    write_text(out_dir / TABLE, text, force=True)
    return text


def run_lossless_eval(image_dir: Path, codecs: list[str], out_dir: Path, limit: int | None = None,
                      workers: int = 2, progress: bool = True) -> dict:
    """Code every RGB image of ``image_dir`` (the first ``limit``) losslessly with ``codecs`` and
    write the results into ``out_dir``.

    Each codec's ``<codec>.json`` (``:`` becomes ``-``) holds its ``per_image`` rows (bytes, bpsp,
    encode and decode seconds) and ``totals`` (bpsp over all images, mean seconds); ``lossless.md``
    compares them. Raises NotLosslessError, naming the codec and the image, on any round trip that
    is not exact. Classical codecs run in ``workers`` processes (their timings then share the CPU;
    0 runs them here); ncodec codecs run here.

    Returns ``{"images": n, "json": {codec: path}, "totals": {codec: totals}, "table": text}``."""
    if workers < 0:
        raise ValueError("workers must be 0 (run everything in this process) or more")
    if limit is not None and limit < 1:
        raise ValueError("limit must be 1 or more")
    paths = find_images(image_dir)[:limit]
    loaded = load_codecs(list(codecs))
    images = [read_rgb(p) for p in paths]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows: dict[str, list[dict]] = {name: [] for name in loaded}
    bar = tqdm(total=len(loaded) * len(paths), unit="img", disable=not progress)

    def record(name: str, i: int, result: dict) -> None:
        h, w = images[i].shape[:2]
        rows[name].append({"image": paths[i].name, "width": w, "height": h, **result})
        bar.update(1)

    pooled = [n for n in loaded if workers and not n.startswith(NCODEC_PREFIX)]
    for name in (n for n in loaded if n not in pooled):
        bar.set_description(name)
        for i, (p, image) in enumerate(zip(paths, images)):
            record(name, i, measure(name, loaded[name], p.name, image))
    if pooled:
        bar.set_description(", ".join(pooled))
        # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = {pool.submit(_classical_job, name, p.name, image): (name, i)
                    for name in pooled for i, (p, image) in enumerate(zip(paths, images))}
            try:
                for fut in as_completed(jobs):
                    record(*jobs[fut], fut.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    bar.close()

    summary = {"images": len(paths), "json": {}, "totals": {}}
    descriptions = {name: _describe(name, codec) for name, codec in loaded.items()}
    for name in loaded:
        per_image = sorted(rows[name], key=lambda r: r["image"])
        summary["totals"][name] = totals(per_image)
        doc = {"name": name, "description": f"{descriptions[name]}; lossless, {len(paths)} images of "
                                            f"{Path(image_dir).name}",
               "totals": summary["totals"][name], "per_image": per_image}
        path = out_dir / f"{name.replace(':', '-')}.json"
        write_text(path, json.dumps(doc, indent=2) + "\n", force=True)
        summary["json"][name] = str(path)
    heading = (f"Lossless coding of {len(paths)} images of {Path(image_dir).name}: bits per sub-pixel over all images "
               f"(8 x bytes / (H x W x {CHANNELS}), lower is better); every codec gave back every image exactly."
               + (f" Classical codecs ran in {workers} worker processes at once." if pooled and workers > 1 else ""))
    summary["table"] = write_table(summary["totals"], descriptions, heading, out_dir)
    return summary


def run(a) -> int:
    """``ncodec eval image --lossless``: measure, write the JSON files and ``lossless.md``, print the table."""
    folder = check_input(a.folder, folder=True)
    rd_only = [flag for flag, value in (("--anchor", a.anchor), ("--reference", a.reference),
                                        ("--qualities", a.qualities), ("--cluster", a.cluster)) if value]
    if rd_only:
        raise UsageError(f"{', '.join(rd_only)}: not for --lossless")
    codecs = default_codecs() if a.codecs is None else [c for c in a.codecs.split(",") if c]
    if not codecs:
        raise UsageError("--codecs names no codec")
    try:
        find_images(folder)
    except ValueError as exc:       # no images
        raise InputError(str(exc)) from None
    try:
        summary = run_lossless_eval(folder, codecs, Path(a.out), limit=a.limit, workers=a.workers)
    except (ValueError, CodecUnavailable) as exc:
        raise UsageError(str(exc)) from None
    print(summary["table"], end="")
    return 0
