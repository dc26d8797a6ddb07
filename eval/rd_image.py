"""Rate-distortion sweeps of image codecs over a folder of images.

Writes one JSON per codec in CompressAI's results layout, plus a Bjøntegaard-delta table
(``bdrate.md``, ``bdrate.csv``) against an anchor curve. Classical codecs run in worker processes;
ncodec's learned codecs run in this process through the public API only (``ncodec.load_codec``)."""
from __future__ import annotations

import copy
import csv
import functools
import inspect
import io
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..fileio import write_text
from ..image import io as image_io
from ..image.app import FITTED   # ncodec:overfit+medium fits with the medium preset; not part of ncodec:*
from . import bdrate
from .bdrate import bd_psnr, bd_rate
from .classical import CLASSICAL_CODECS, get_codec
from .metrics import bpp, ms_ssim, psnr

IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".ppm", ".pnm")
DEFAULT_CODECS = "ncodec:*,jpeg,webp,avif"
RESULT_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")
NCODEC_PREFIX = "ncodec:"
REFINE_MARK = "+refine"      # ncodec:hyperprior+refine100 encodes with 100 refinement steps


def find_images(image_dir: Path) -> list[Path]:
    """The lossless images (PNG, BMP, TIFF, PPM) of a folder, sorted by name."""
    files = sorted(p for p in Path(image_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no lossless images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    return files


def read_image(path: Path) -> np.ndarray:
    """An image file as a uint8 HxWx3 RGB array, read upright by ncodec's reader (grey is
    repeated into three channels, alpha dropped)."""
    image = image_io.read_image(path)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else np.ascontiguousarray(image[:, :, :3])


def measure(codec, image: np.ndarray, quality: float) -> dict:
    """Encode and decode one image at one quality: bytes of the real stream, bpp, PSNR, MS-SSIM, seconds."""
    t0 = time.perf_counter()
    data = codec.encode(image, quality=quality)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    out = np.asarray(out)
    if out.shape != image.shape or out.dtype != np.uint8:
        raise ValueError(f"decoder returned {out.dtype} {out.shape} for a uint8 {image.shape} input")
    h, w = image.shape[:2]
    return {"bytes": len(data), "bpp": bpp(len(data), h, w), "psnr-rgb": psnr(image, out),
            "ms-ssim-rgb": ms_ssim(image, out), "encoding_time": t1 - t0, "decoding_time": t2 - t1}


# Worker-process state: each worker reads the images once, then runs (codec, quality, image) jobs.
_worker_images: list[np.ndarray] = []
_worker_codec = functools.lru_cache(maxsize=None)(get_codec)


def _init_worker(paths: list[Path]) -> None:
    import torch

    torch.set_num_threads(1)  # MS-SSIM in every worker: one thread each, or they fight over the cores
    _worker_images[:] = [read_image(p) for p in paths]


def _classical_job(name: str, quality: float, index: int) -> dict:
    return measure(_worker_codec(name), _worker_images[index], quality)


def read_curves(path: Path) -> dict[str, dict]:
    """RD curves of a JSON file, as ``{name: {"bpp": [...], "psnr-rgb": [...], ...}}``.

    Reads CompressAI's layout (``{"name": ..., "results": {"bpp": [...], ...}}``) and the layout
    of ``shared/anchors/kodak_pillow_classical.json`` (``{name: [[bpp, psnr-rgb], ...]}``)."""
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as exc:       # not UTF-8, or not JSON
        raise ValueError(f"{path} is not a JSON file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("results"), dict):
        return {str(data.get("name") or Path(path).stem): data["results"]}
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        try:
            return {name: {"bpp": [float(p[0]) for p in pts], "psnr-rgb": [float(p[1]) for p in pts]}
                    for name, pts in data.items()}
        except (TypeError, IndexError, ValueError):
            pass
    raise ValueError(f"{path}: neither CompressAI's results layout nor a {{name: [[bpp, psnr], ...]}} mapping")


def bd_table(curves: dict[str, dict], anchor: str) -> list[dict]:
    """BD-rate (%) and BD-PSNR (dB, PSNR-RGB) of every curve against ``curves[anchor]``, best first.

    A curve that cannot be compared (no PSNR, no overlap) gets nan and a ``note`` saying why."""
    ref = curves[anchor]
    rows = []
    for name, res in curves.items():
        row = {"codec": name, "bd_rate_pct": math.nan, "bd_psnr_db": math.nan, "note": "",
               "bpp_min": min(res["bpp"]), "bpp_max": max(res["bpp"])}
        try:
            if "psnr-rgb" not in res:
                raise ValueError("no psnr-rgb values")
            args = (ref["bpp"], ref["psnr-rgb"], res["bpp"], res["psnr-rgb"])
            row["bd_rate_pct"], row["bd_psnr_db"] = bd_rate(*args), bd_psnr(*args)
        except ValueError as e:
            row["note"] = str(e)
        rows.append(row)
    return sorted(rows, key=lambda r: (math.isnan(r["bd_rate_pct"]), r["bd_rate_pct"]))


def write_bd_table(rows: list[dict], anchor: str, out_dir: Path) -> None:
    """Write ``bdrate.md`` and ``bdrate.csv`` (codec, BD-rate %, BD-PSNR dB, bpp range) into out_dir."""
    md = [f"BD-rate and BD-PSNR (PSNR-RGB, piecewise cubic) against **{anchor}**; negative BD-rate is better.", "",
          "| codec | BD-rate (%) | BD-PSNR (dB) | bpp range |", "|---|---:|---:|---|"]
    notes = []
    for r in rows:
        if r["note"]:
            notes.append(f"- {r['codec']}: {r['note']}")
            cells = "n/a | n/a"
        else:
            cells = f"{r['bd_rate_pct']:+.2f} | {r['bd_psnr_db']:+.3f}"
        md.append(f"| {r['codec']} | {cells} | {r['bpp_min']:.3f} - {r['bpp_max']:.3f} |")
    write_text(out_dir / "bdrate.md", "\n".join(md + ([""] + notes if notes else [])) + "\n", force=True)
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["codec", "bd_rate_pct", "bd_psnr_db", "bpp_min", "bpp_max", "note"])
    for r in rows:
        vals = ["" if math.isnan(r[k]) else f"{r[k]:.4f}" for k in ("bd_rate_pct", "bd_psnr_db")]
        w.writerow([r["codec"], *vals, f"{r['bpp_min']:.4f}", f"{r['bpp_max']:.4f}", r["note"]])
    write_text(out_dir / "bdrate.csv", table.getvalue(), force=True)


class ConfiguredCodec:
    """An ncodec image codec that encodes with extra options (refinement steps, a fitting preset)."""

    def __init__(self, codec, note: str, **options):
        self.codec, self.options = codec, options
        self.qualities = codec.qualities
        self.description = f"{codec.description}, {note}"

    def encode(self, image, quality):
        return self.codec.encode(image, quality=quality, **self.options)

    def with_checkpoint(self, path: Path) -> "ConfiguredCodec":
        """The same codec, its fit saved to and resumed from ``path`` (codecs whose fits take one)."""
        if "checkpoint" not in inspect.signature(self.codec.encode).parameters:
            return self
        out = copy.copy(self)
        out.options = {**self.options, "checkpoint": str(path)}
        return out

    def decode(self, data):
        return self.codec.decode(data)


def _ncodec_codec(name: str):
    """The codec of ``ncodec:MODEL``, ``ncodec:MODEL+refineN`` or, for a codec whose ``encode`` takes a
    fitting ``preset`` (the codecs fitted to each image), ``ncodec:MODEL+PRESET``."""
    import ncodec
    from ncodec.image.overfit.fit import PRESETS

    model, plus, option = name[len(NCODEC_PREFIX):].partition("+")
    codec = ncodec.load_codec(model, modality="image")
    if not plus:
        return codec
    if "preset" in inspect.signature(codec.encode).parameters:
        if option not in PRESETS:
            raise ValueError(f"{name!r}: write the fitting preset as {NCODEC_PREFIX}{model}+{'|'.join(PRESETS)}")
        return ConfiguredCodec(codec, f"preset {option}", preset=option)
    steps = option[len(REFINE_MARK) - 1:] if ("+" + option).startswith(REFINE_MARK) else ""
    if not steps.isdigit():
        raise ValueError(f"{name!r}: write refinement steps as {NCODEC_PREFIX}{model}{REFINE_MARK}N")
    return ConfiguredCodec(codec, f"encoder refinement {int(steps)} steps", refine=int(steps))


def _load_codecs(names: list[str]) -> dict[str, object]:
    """Codec objects by name; expands ``ncodec:*`` (every shipped model; the overfit codec, whose
    encoding takes minutes an image, only when named) and fails before any work on an unknown name."""
    import ncodec

    out = {}
    for name in names:
        if name == NCODEC_PREFIX + "*":
            for n in _every_model():
                out[n] = ncodec.load_codec(n[len(NCODEC_PREFIX):], modality="image")
        elif name.startswith(NCODEC_PREFIX):
            out[name] = _ncodec_codec(name)
        elif name in CLASSICAL_CODECS:
            out[name] = get_codec(name)
        else:
            raise ValueError(f"unknown codec {name!r}: use one of {', '.join(CLASSICAL_CODECS)}, "
                             f"{NCODEC_PREFIX}NAME or {NCODEC_PREFIX}*")
    return out


def _every_model() -> list[str]:
    """What ``ncodec:*`` stands for: every shipped lossy image model (not the codecs fitted to each
    image, whose encoding takes minutes an image: those only when named)."""
    import ncodec

    return [NCODEC_PREFIX + n for n in ncodec.list_codecs(modality="image") if n not in FITTED]


def _ncodec_job(name: str, quality: float, image: np.ndarray) -> dict:
    """One ncodec measurement on a cluster worker."""
    return measure(_ncodec_codec(name), image, quality)


def _describe(name: str, codec) -> str:
    if name.startswith(NCODEC_PREFIX):
        return f"ncodec {name[len(NCODEC_PREFIX):]}: {getattr(codec, 'description', '')}".rstrip(": ")
    return codec.description


def run_image_eval(image_dir: Path, codecs: list[str], out_dir: Path, per_image: bool = False,
                   anchor: str | None = "avif", workers: int = 2, progress: bool = True,
                   reference_jsons: list[Path] = (), qualities: dict[str, list[float]] | None = None,
                   cluster: str | None = None, checkpoint_dir: Path | None = None) -> dict:
    """Sweep ``codecs`` over every image of ``image_dir`` and write the results into ``out_dir``.

    ``codecs`` holds classical names (jpeg, webp, avif, jpeg2000, jxl), ``ncodec:NAME``, ``ncodec:*``
    or ``ncodec:NAME+refineN`` (encoding with N steps of latent refinement).
    Each quality's point is the mean over images of per-image bpp, PSNR-RGB, MS-SSIM and encode/decode
    seconds, written as ``<codec>.json`` (``:`` becomes ``-``) in CompressAI's layout, with the sweep's
    settings under ``results["quality"]`` and, if ``per_image``, every measurement in a ``per_image``
    list. ``qualities`` overrides a codec's default sweep by name. Classical codecs run in ``workers``
    processes (their timings then share the CPU; 0 runs them here); ncodec codecs run here, one
    image at a time, or as jobs on the Dask ``cluster`` at that scheduler address.
    ``reference_jsons`` adds published curves (see :func:`read_curves`) to the BD table, whose anchor
    may be a measured codec or a reference curve (None: no table). With ``checkpoint_dir``, the fits
    of the codecs fitted per image (``ncodec:overfit+PRESET``) are saved there, one file per image,
    codec and quality, and resumed from it: an interrupted sweep goes on where it stopped (a resumed
    point's encoding time counts only the part run after resuming).

    Returns ``{"images": n, "json": {codec: path}, "curves": {name: results}, "bdrate": rows}``."""
    if workers < 0:
        raise ValueError("workers must be 0 (run everything in this process) or more")
    paths = find_images(image_dir)
    references: dict[str, dict] = {}
    for ref in reference_jsons:
        references.update(read_curves(ref))
    loaded = _load_codecs(list(codecs))
    clash = set(references) & set(loaded)
    if clash:
        raise ValueError(f"reference curves named like measured codecs: {', '.join(sorted(clash))}")
    if cluster and checkpoint_dir is not None:
        raise ValueError("checkpoints are for sweeps run here, not on a cluster")
    if anchor is not None and anchor not in loaded and anchor not in references:
        raise ValueError(f"anchor {anchor!r} is neither among the codecs nor the reference curves")
    qualities = dict(qualities or {})
    if set(qualities) - set(loaded):
        raise ValueError(f"qualities given for codecs not in the sweep: {', '.join(set(qualities) - set(loaded))}")
    sweeps = {name: list(qualities.get(name, codec.qualities)) for name, codec in loaded.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows: dict[str, list[dict]] = {name: [] for name in loaded}
    bar = tqdm(total=sum(len(q) for q in sweeps.values()) * len(paths), unit="img", disable=not progress)
    pooled = [n for n in loaded if workers and not n.startswith(NCODEC_PREFIX)]
    in_process = [n for n in loaded if n not in pooled]
    images = [read_image(p) for p in paths] if in_process else []
    if cluster and in_process:
        _measure_on_cluster(cluster, in_process, sweeps, paths, images, rows, bar)
        in_process = []
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    for name in in_process:
        bar.set_description(name)
        for q in sweeps[name]:
            for p, img in zip(paths, images):
                codec = loaded[name]
                if checkpoint_dir is not None and isinstance(codec, ConfiguredCodec):
                    stem = f"{p.stem}-{name.replace(':', '-')}-q{q:g}"
                    codec = codec.with_checkpoint(Path(checkpoint_dir) / f"{stem}.pt")
                rows[name].append({"image": p.name, "quality": q, **measure(codec, img, q)})
                bar.update(1)
    if pooled:
        bar.set_description(", ".join(pooled))
        # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(paths,)) as pool:
            jobs = {pool.submit(_classical_job, name, q, i): (name, q, i)
                    for name in pooled for q in sweeps[name] for i in range(len(paths))}
            for fut in as_completed(jobs):
                name, q, i = jobs[fut]
                rows[name].append({"image": paths[i].name, "quality": q, **fut.result()})
                bar.update(1)
    bar.close()

    summary = {"images": len(paths), "json": {}, "curves": {}, "bdrate": []}
    for name, codec in loaded.items():
        by_q = {q: [r for r in rows[name] if r["quality"] == q] for q in sweeps[name]}
        results = {"quality": sweeps[name]}
        results.update({k: [float(np.mean([r[k] for r in by_q[q]])) for q in sweeps[name]] for k in RESULT_KEYS})
        doc = {"name": name, "description": f"{_describe(name, codec)}; mean over {len(paths)} images of "
                                            f"{Path(image_dir).name}", "results": results}
        if per_image:
            doc["per_image"] = sorted(rows[name], key=lambda r: (sweeps[name].index(r["quality"]), r["image"]))
        path = out_dir / f"{name.replace(':', '-')}.json"
        write_text(path, json.dumps(doc, indent=2) + "\n", force=True)
        summary["json"][name], summary["curves"][name] = str(path), results
    summary["curves"].update(references)
    if anchor is not None:
        summary["bdrate"] = bd_table(summary["curves"], anchor)
        write_bd_table(summary["bdrate"], anchor, out_dir)
    return summary


def _measure_on_cluster(address: str, names: list[str], sweeps: dict, paths: list[Path], images: list,
                        rows: dict, bar) -> None:
    """Every (codec, quality, image) measurement of ``names`` as one job on the Dask cluster."""
    import torch

    from ..cluster import cluster_executor, with_threads

    bar.set_description(f"{', '.join(names)} on {address}")
    with cluster_executor(address) as pool:
        job = with_threads(_ncodec_job, torch.get_num_threads())
        jobs = {pool.submit(job, name, q, img): (name, q, p.name)
                for name in names for q in sweeps[name] for p, img in zip(paths, images)}
        for fut in as_completed(jobs):
            name, q, image = jobs[fut]
            rows[name].append({"image": image, "quality": q, **fut.result()})
            bar.update(1)


def add_arguments(p) -> None:
    """Options of ``ncodec eval image``."""
    p.add_argument("folder")
    p.add_argument("--codecs", default=None,
                   help="comma-separated; ncodec:NAME, ncodec:* (the shipped models), ncodec:NAME+refineN (N encoder "
                        f"refinement steps) or ncodec:overfit+PRESET (fast, medium or slow) (default {DEFAULT_CODECS}; "
                        "for --lossless see there)")
    p.add_argument("--out", default="results",
                   help="folder for JSON, bdrate.md and bdrate.csv (with --lossless: JSON and lossless.md)")
    p.add_argument("--per-image", action="store_true")
    p.add_argument("--anchor", default=None,
                   help="BD-rate reference: a codec of the sweep or a --reference curve (default: avif if swept or "
                        "given as a reference, else the first classical codec, else the first codec)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run the ncodec measurements on the Dask cluster whose scheduler is at ADDRESS "
                        "(e.g. tcp://host:8786; workers need ncodec installed)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="resumable sweeps of ncodec:overfit+PRESET: every fit is saved to and resumed from DIR")
    p.add_argument("--reference", nargs="*", default=[], help="extra CompressAI-layout JSON curves")
    p.add_argument("--qualities", action="append", default=[], metavar="CODEC=Q1,Q2,...",
                   help="this codec's sweep instead of its default one (repeatable), e.g. ncodec:hyperprior=1,2,4,6")
    p.add_argument("--lossless", action="store_true",
                   help="lossless benchmark instead of the RD sweep: every codec must give back every image exactly; "
                        "bits per sub-pixel and seconds per image in one JSON per codec and lossless.md; codecs png, "
                        "webp, jpeg2000, jxl and ncodec:NAME[+PRESET] (default png,webp,jpeg2000,jxl,ncodec:lossless)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="with --lossless: only the first N images")


def parse_qualities(specs: list[str]) -> dict[str, list[float]]:
    """``["CODEC=Q1,Q2,...", ...]`` -> ``{CODEC: [Q1, Q2, ...]}``; ValueError names a malformed one."""
    out: dict[str, list[float]] = {}
    for spec in specs:
        name, _, values = spec.rpartition("=")
        try:
            qs = [float(v) for v in values.split(",")]
        except ValueError:
            qs = []
        if not name or not qs or name in out:
            raise ValueError(f"--qualities {spec!r}: expected CODEC=Q1,Q2,... once per codec")
        out[name] = qs
    return out


def default_anchor(codecs: list[str], references=()) -> str:
    """The BD-rate anchor among ``codecs`` and the ``references`` files' curves: avif, else the first
    classical codec, else the first codec."""
    names = [n for c in codecs for n in (_every_model() if c == NCODEC_PREFIX + "*" else [c])]
    return bdrate.default_anchor(names + [n for r in references for n in read_curves(r)], CLASSICAL_CODECS, "avif")


def run(a) -> int:
    """``ncodec eval image``: sweep, write JSON and the BD table, print the table (with ``--lossless``,
    the lossless benchmark of :mod:`ncodec.eval.lossless`)."""
    from ..errors import InputError, UsageError, check_input

    if a.lossless:
        from .lossless import run as run_lossless

        return run_lossless(a)
    if a.limit is not None:
        raise UsageError("--limit is for --lossless")
    folder = check_input(a.folder, folder=True)
    codecs = [c for c in (DEFAULT_CODECS if a.codecs is None else a.codecs).split(",") if c]
    if not codecs:
        raise UsageError("--codecs names no codec")
    try:
        find_images(folder)
        for ref in a.reference:
            read_curves(check_input(ref))
    except ValueError as exc:       # no images; a reference that is not a curve file (or not JSON)
        raise InputError(str(exc)) from None
    try:
        summary = run_image_eval(folder, codecs, Path(a.out), per_image=a.per_image,
                                 anchor=a.anchor or default_anchor(codecs, a.reference), workers=a.workers,
                                 cluster=a.cluster, reference_jsons=[Path(r) for r in a.reference],
                                 qualities=parse_qualities(a.qualities),
                                 checkpoint_dir=Path(a.checkpoint_dir) if a.checkpoint_dir else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    table = Path(a.out) / "bdrate.md"
    print(table.read_text() if table.exists() else summary)
    return 0
