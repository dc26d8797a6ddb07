"""Rate-distortion sweeps of image codecs over a folder, written in CompressAI's JSON layout,
with a Bjøntegaard-delta table against an anchor codec."""
from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .bdrate import bd_psnr, bd_rate
from .classical import classical_codecs
from .metrics import bpp, ms_ssim, psnr

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".ppm"}


def load_images(folder: Path) -> dict[str, np.ndarray]:
    """Lossless images of a folder as RGB uint8 arrays, by file name."""
    from PIL import Image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no lossless images (png, bmp, tiff, ppm) in {folder}")
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in files}


def measure(codec, image: np.ndarray, quality) -> dict:
    """Encode + decode one image at one setting; bytes from the real stream."""
    t0 = time.perf_counter()
    data = codec.encode(image, quality)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    h, w = image.shape[:2]
    return {"bytes": len(data), "bpp": bpp(len(data), h, w), "psnr-rgb": psnr(image, out),
            "ms-ssim-rgb": ms_ssim(image, out), "encoding_time": t1 - t0, "decoding_time": t2 - t1}


def _classical_job(args):
    name, image, quality = args
    return measure(classical_codecs()[name], image, quality)


def resolve_codecs(names: list[str]) -> list[str]:
    """Expand ``ncodec:*`` and check every name."""
    import ncodec

    out, known = [], classical_codecs()
    for n in names:
        if n == "ncodec:*":
            out += [f"ncodec:{c}" for c in ncodec.list_codecs("image")]
        elif n.startswith("ncodec:") or n in known:
            out.append(n)
        else:
            raise ValueError(f"unknown codec {n!r}; classical codecs here: {', '.join(known)}; or ncodec:NAME")
    return out


def _summarise(name: str, qualities: list, rows: dict, per_image: bool) -> dict:
    keys = ["bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"]
    results = {k: [float(np.mean([r[k] for r in rows[q]])) for q in qualities] for k in keys}
    out = {"name": name, "description": f"measured by ncodec eval over {len(rows[qualities[0]])} images",
           "results": {"quality": list(qualities), **results}}
    if per_image:
        out["per_image"] = {str(q): rows[q] for q in qualities}
    return out


def bd_table(curves: dict[str, dict], anchor: str) -> list[dict]:
    """BD-rate / BD-PSNR of every curve against the anchor (rows sorted best first)."""
    a = curves[anchor]["results"]
    rows = []
    for name, c in curves.items():
        r = c["results"]
        try:
            rate, dpsnr = bd_rate(a["bpp"], a["psnr-rgb"], r["bpp"], r["psnr-rgb"]), \
                bd_psnr(a["bpp"], a["psnr-rgb"], r["bpp"], r["psnr-rgb"])
        except ValueError:
            rate = dpsnr = float("nan")
        rows.append({"codec": name, "bd_rate_pct": rate, "bd_psnr_db": dpsnr,
                     "bpp_min": min(r["bpp"]), "bpp_max": max(r["bpp"])})
    return sorted(rows, key=lambda x: (np.isnan(x["bd_rate_pct"]), x["bd_rate_pct"]))


def write_bd_table(rows: list[dict], anchor: str, out_dir: Path) -> None:
    md = [f"| codec | BD-rate vs {anchor} | BD-PSNR (dB) | bpp range |", "|---|---|---|---|"]
    csv = ["codec,bd_rate_pct,bd_psnr_db,bpp_min,bpp_max"]
    for r in rows:
        md.append(f"| {r['codec']} | {r['bd_rate_pct']:+.1f} % | {r['bd_psnr_db']:+.2f} | "
                  f"{r['bpp_min']:.3f}-{r['bpp_max']:.3f} |")
        csv.append(f"{r['codec']},{r['bd_rate_pct']:.3f},{r['bd_psnr_db']:.4f},{r['bpp_min']:.4f},{r['bpp_max']:.4f}")
    (out_dir / "bdrate.md").write_text("\n".join(md) + "\n")
    (out_dir / "bdrate.csv").write_text("\n".join(csv) + "\n")


def run_image_eval(image_dir: Path, codecs: list[str], out_dir: Path, per_image: bool = False, anchor: str = "avif",
                   workers: int = 2, progress: bool = True, reference_jsons=(), qualities: dict | None = None) -> dict:
    """Sweep codecs over a folder; write one JSON per codec plus bdrate.md/csv; return the curves."""
    import ncodec

    images = load_images(image_dir)
    names = resolve_codecs(codecs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    known = classical_codecs()
    curves = {}
    for name in names:
        codec = ncodec.load_codec(name.split(":", 1)[1]) if name.startswith("ncodec:") else known[name]
        qs = list((qualities or {}).get(name, codec.qualities))
        jobs = [(q, img_name) for q in qs for img_name in images]
        bar = tqdm(total=len(jobs), desc=name, unit="img", disable=not progress)
        rows = {q: [] for q in qs}
        if name in known:
            # spawn, not fork: forking a process that already runs torch's thread pools can deadlock
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = pool.map(_classical_job, [(name, images[i], q) for q, i in jobs])
                for (q, img_name), r in zip(jobs, results):
                    rows[q].append({"image": img_name, **r})
                    bar.update(1)
        else:
            for q, img_name in jobs:
                rows[q].append({"image": img_name, **measure(codec, images[img_name], q)})
                bar.update(1)
        bar.close()
        curves[name] = _summarise(name, qs, rows, per_image)
        (out_dir / f"{name.replace(':', '-')}.json").write_text(json.dumps(curves[name], indent=2))
    for ref in reference_jsons:
        data = json.loads(Path(ref).read_text())
        curves[f"{data.get('name', Path(ref).stem)} (reference)"] = data
    if anchor in curves:
        write_bd_table(bd_table(curves, anchor), anchor, out_dir)
    return curves
