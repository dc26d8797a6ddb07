"""The ``ncodec`` command line.  Every failure ends as one line on stderr and an exit code
per error class (see :mod:`ncodec.errors`); no tracebacks."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import NcodecError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _add_common(p):
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where transforms run (default: cuda if present)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _batch(src: Path, dst: Path, suffixes: set[str], out_suffix, work) -> int:
    """Run ``work(in, out)`` over a folder, keep going past failures, exit non-zero if any failed."""
    if dst.exists() and not dst.is_dir():
        raise UsageError(f"{dst} must be a folder when the input is a folder")
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise UsageError(f"no suitable files in {src}")
    from tqdm import tqdm

    failed = 0
    for f in tqdm(files, desc="files", unit="file", file=sys.stderr):
        try:
            work(f, dst / (f.stem + out_suffix(f)))
        except NcodecError as exc:
            failed += 1
            tqdm.write(f"ncodec: {f}: {exc}", file=sys.stderr)
    print(f"{len(files) - failed} of {len(files)} files done, {failed} failed")
    return 3 if failed else 0


def cmd_encode(a) -> int:
    from . import api
    from .image.io import READ_SUFFIXES

    src, dst = Path(a.input), Path(a.output)

    def one(i, o):
        r = api.encode_file(i, o, codec=a.model, quality=a.quality, device=a.device, force=a.force)
        print(f"{i} -> {o}: {r['bytes']} bytes, {r['bpp']:.4f} bpp")

    if src.is_dir():
        return _batch(src, dst, READ_SUFFIXES, lambda f: ".ncz", one)
    one(src, dst)
    return 0


def cmd_decode(a) -> int:
    from . import api

    src, dst = Path(a.input), Path(a.output)

    def one(i, o):
        api.decode_file(i, o, device=a.device, force=a.force)
        print(f"{i} -> {o}")

    if src.is_dir():
        return _batch(src, dst, {".ncz"}, lambda f: ".png", one)
    one(src, dst)
    return 0


def cmd_info(a) -> int:
    from . import api
    from .fileio import read_bytes

    info = api.info(read_bytes(Path(a.input)))
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"codec    {info['codec']}\nmodel    {info['model']} (weights {info['weights']}, coder v{info['coder_version']})")
    for k, v in info["fields"].items():
        print(f"{k:<8} {v}")
    for k, v in info["sections"].items():
        print(f"section  {k:<6} {v} bytes")
    print(f"total    {info['bytes']} bytes" + (f", {info['bpp']:.4f} bpp" if "bpp" in info else ""))
    return 0


def cmd_demo(a) -> int:
    """Encode and decode scikit-image's bundled photographs with the default model."""
    import numpy as np
    from skimage import data as skdata

    from . import api
    from .image.io import read_image

    codec = api.load_codec(a.model, a.device)
    samples = {"astronaut": skdata.astronaut(), "coffee": skdata.coffee(), "chelsea": skdata.chelsea(),
               "camera (gray)": skdata.camera()}
    for extra in a.images:
        samples[extra] = read_image(Path(extra))
    from .eval.metrics import psnr

    print(f"model {codec.name}: {codec.description}")
    print(f"{'image':<16} {'size':>9} {'quality':>7} {'bytes':>8} {'bpp':>7} {'PSNR dB':>8}")
    for name, img in samples.items():
        for q in a.qualities:
            data = codec.encode(img, quality=q)
            out = codec.decode(data)
            ref = img if img.ndim == 3 else img[:, :, None]
            h, w = ref.shape[:2]
            print(f"{name:<16} {w:>4}x{h:<4} {q:>7g} {len(data):>8} {8 * len(data) / (h * w):>7.4f} "
                  f"{psnr(ref, out):>8.2f}")
    return 0


def cmd_train(a) -> int:
    from .image.train import TrainOptions, train

    if a.modality != "image":
        raise UsageError("only `ncodec train image` exists so far")
    train(TrainOptions(arch=a.arch, data=Path(a.data), out=Path(a.out), steps=a.steps, batch=a.batch,
                       crop=a.crop, lr=a.lr, device=a.device or "cpu", max_minutes=a.max_minutes,
                       stop_after_minutes=a.stop_after_minutes, export=Path(a.export) if a.export else None,
                       init=Path(a.init) if a.init else None, threads=a.threads, seed=a.seed,
                       prior_lr_scale=a.prior_lr_scale, amp=a.amp))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ncodec", description="Neural compression: learned codecs with real bitstreams.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    e = sub.add_parser("encode", help="compress a file (or every image in a folder)")
    e.add_argument("input")
    e.add_argument("output")
    e.add_argument("--quality", "-q", type=float, default=None, help="1 (smallest) .. 6 (best); default 6")
    e.add_argument("--model", "--codec", dest="model", default=None, help="codec/model name (see `ncodec models`)")
    _add_common(e)
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decompress an .ncz file (or every .ncz in a folder)")
    d.add_argument("input")
    d.add_argument("output")
    _add_common(d)
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="show what an .ncz file holds")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list the shipped codecs")
    m.set_defaults(func=lambda a: print("\n".join(_model_lines())) or 0)

    demo = sub.add_parser("demo", help="encode/decode bundled sample photos and print bpp and PSNR")
    demo.add_argument("--model", default="hyperprior")
    demo.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 6])
    demo.add_argument("--device", choices=["cpu", "cuda"], default=None)
    demo.add_argument("images", nargs="*", help="extra image files to include")
    demo.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a model (resumable)")
    t.add_argument("modality", choices=["image"])
    t.add_argument("--arch", choices=["factorized", "hyperprior", "slice"], required=True)
    t.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    t.add_argument("--out", required=True, help="run folder (checkpoint.pt, log.jsonl); rerun to resume")
    t.add_argument("--steps", type=int, default=100_000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--device", choices=["cpu", "cuda"], default=None)
    t.add_argument("--max-minutes", type=float, default=0.0, help="schedule length in wall time (lr drops at 85%%)")
    t.add_argument("--stop-after-minutes", type=float, default=0.0, help="end this invocation early (resumable)")
    t.add_argument("--export", default=None, help="write safetensors weights here at the end")
    t.add_argument("--init", default=None, help="warm start from a weights file")
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA, off on CPU; worth it only on CPUs with AMX)")
    t.add_argument("--prior-lr-scale", type=float, default=1.0, help="lr multiplier for the learned densities")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)
    _add_eval_commands(sub)
    return p


def _model_lines():
    from .api import IMAGE_MODELS

    return [f"{k:<12} image  {v[1]}" for k, v in IMAGE_MODELS.items()]


def _add_eval_commands(sub):
    ev = sub.add_parser("eval", help="rate-distortion sweep over a folder")
    ev.add_argument("modality", choices=["image"])
    ev.add_argument("folder")
    ev.add_argument("--codecs", default="ncodec:*,jpeg,webp,avif", help="comma-separated; ncodec:NAME or ncodec:*")
    ev.add_argument("--out", default="results", help="folder for JSON, bdrate.md and bdrate.csv")
    ev.add_argument("--per-image", action="store_true")
    ev.add_argument("--anchor", default="avif")
    ev.add_argument("--workers", type=int, default=2)
    ev.add_argument("--reference", nargs="*", default=[], help="extra CompressAI-layout JSON curves")
    ev.set_defaults(func=cmd_eval)
    b = sub.add_parser("bench", help="image codec speed (transform vs entropy time) and coder overhead")
    b.add_argument("folder")
    b.add_argument("--models", default="factorized,hyperprior,slice")
    b.add_argument("--quality", type=float, default=3.0)
    b.add_argument("--device", choices=["cpu", "cuda"], default=None)
    b.add_argument("--limit", type=int, default=0, help="use only the first N images")
    b.add_argument("--json", default=None, help="also write the report here")
    b.set_defaults(func=cmd_bench)
    pl = sub.add_parser("plot", help="draw RD curves from CompressAI-layout JSON files")
    pl.add_argument("json", nargs="+")
    pl.add_argument("-o", "--output", required=True, help="PNG or SVG")
    pl.add_argument("--metric", default="psnr-rgb")
    pl.add_argument("--title", default=None)
    pl.set_defaults(func=cmd_plot)


def cmd_eval(a) -> int:
    from .eval import run_image_eval

    folder = Path(a.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    summary = run_image_eval(folder, [c for c in a.codecs.split(",") if c], Path(a.out), per_image=a.per_image,
                             anchor=a.anchor, workers=a.workers, reference_jsons=[Path(r) for r in a.reference])
    print((Path(a.out) / "bdrate.md").read_text() if (Path(a.out) / "bdrate.md").exists() else summary)
    return 0


def cmd_bench(a) -> int:
    from .eval.bench import bench_image, format_report

    folder = Path(a.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    report = bench_image(folder, a.models.split(","), quality=a.quality, device=a.device or "cpu", limit=a.limit)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    print(format_report(report))
    return 0


def cmd_plot(a) -> int:
    from .eval import plot_rd

    plot_rd([Path(j) for j in a.json], Path(a.output), metric=a.metric, title=a.title)
    print(f"wrote {a.output}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``ncodec`` command; returns the exit code."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TF32.*")
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except NcodecError as exc:
        print(f"ncodec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ncodec: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("ncodec: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # last resort: one line, never a traceback
        print(f"ncodec: internal error: {type(exc).__name__}: {exc} (please report this)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
