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
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="folders: files coded in N worker processes (default 1, which already uses every "
                        "core through torch's threads; more pays on many-core machines)")


def _quiet_warnings() -> None:
    """Library warnings that mean nothing to a command-line user."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TF32.*")


def _init_worker(threads: int) -> None:
    import torch

    from .allocator import keep_freed_memory

    torch.set_num_threads(threads)
    _quiet_warnings()
    keep_freed_memory()


def _batch(src: Path, dst: Path, wanted, task, jobs: int | None) -> int:
    """Run ``task(file, dst)`` (picklable; returns the line to print) over the ``wanted`` files of
    folder ``src`` into folder ``dst`` in ``jobs`` processes, keep going past failures, exit
    non-zero if any failed."""
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm import tqdm

    if dst.exists() and not dst.is_dir():
        raise UsageError(f"{dst} must be a folder when the input is a folder")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.iterdir() if p.is_file() and wanted(p))
    if not files:
        raise UsageError(f"no suitable files in {src}")
    jobs = min(jobs or 1, len(files))
    failed = 0
    bar = tqdm(total=len(files), desc="files", unit="file", file=sys.stderr)

    def finish(f: Path, run) -> None:
        nonlocal failed
        try:
            tqdm.write(run())
        except NcodecError as exc:
            failed += 1
            tqdm.write(f"ncodec: {f}: {exc}", file=sys.stderr)
        bar.update(1)

    if jobs == 1:
        for f in files:
            finish(f, lambda: task(f, dst))
    else:   # spawn, not fork: forking a process whose torch thread pools run can deadlock
        threads = max(1, len(os.sched_getaffinity(0)) // jobs)
        pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(threads,))
        try:
            futures = {pool.submit(task, f, dst): f for f in files}
            for fut in as_completed(futures):
                finish(futures[fut], fut.result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    print(f"{len(files) - failed} of {len(files)} files done, {failed} failed")
    return 3 if failed else 0


def _modality_options(a) -> dict:
    """The modality options the user actually gave (flags declared in the apps' ENCODE_OPTIONS or
    DECODE_OPTIONS)."""
    return {dest: getattr(a, dest) for dest in a.option_dests if getattr(a, dest) is not None}


def _encode_task(i: Path, o: Path, options: dict, into_folder: bool = False) -> str:
    """Encode one file into ``o`` (``into_folder``: into ``o/<stem>.ncz``); the line to print."""
    from . import api

    if into_folder:
        o = o / (i.stem + ".ncz")
    return f"{i} -> {o}: {api.encode_file(i, o, **options)['summary']}"


def _decode_task(i: Path, o: Path, options: dict, into_folder: bool = False) -> str:
    """Decode one stream into ``o`` (``into_folder``: into folder ``o``, the stream's modality
    picking the file name); the line to print."""
    from . import api

    out, summary = api.decode_file(i, None if into_folder else o, folder=o if into_folder else None, **options)
    return f"{i} -> {out}: {summary}"


def cmd_encode(a) -> int:
    from functools import partial

    from . import api

    src, dst = Path(a.input), Path(a.output)
    options = dict(codec=a.model, quality=a.quality, device=a.device, force=a.force, **_modality_options(a))
    single = not src.is_dir() or dst.suffix.lower() == ".ncz"   # a folder of video frames into one stream
    if single:
        print(_encode_task(src, dst, options))
        return 0
    apps = [api.app_for_input(src, a.model)] if a.model else list(api.apps().values())
    task = partial(_encode_task, options=options, into_folder=True)
    return _batch(src, dst, lambda f: any(app.accepts(f) for app in apps), task, a.jobs)


def cmd_decode(a) -> int:
    from functools import partial

    src, dst = Path(a.input), Path(a.output)
    options = dict(device=a.device, force=a.force, **_modality_options(a))
    if src.is_dir():   # each stream read once; its modality picks the output suffix
        task = partial(_decode_task, options=options, into_folder=True)
        return _batch(src, dst, lambda f: f.suffix.lower() == ".ncz", task, a.jobs)
    print(_decode_task(src, dst, options))
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
    extra = {k: v for k, v in info.items() if k not in ("codec", "model", "weights", "coder_version", "bytes",
                                                         "fields", "sections")}
    for k, v in extra.items():
        print(f"{k:<8} {v:.4f}" if isinstance(v, float) else f"{k:<8} {v}")
    print(f"total    {info['bytes']} bytes")
    return 0


def cmd_demo(a) -> int:
    """Encode and decode scikit-image's bundled photographs with the default model."""
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


# Per-modality subcommands: `ncodec train MODALITY` and `ncodec eval MODALITY` are provided by
# modules with add_arguments(parser) and run(args) -> exit code.
TRAIN_MODULES = {"image": "ncodec.image.train", "audio": "ncodec.audio.train"}
EVAL_MODULES = {"image": "ncodec.eval.rd_image", "video": "ncodec.eval.rd_video", "audio": "ncodec.eval.rd_audio"}


def _add_modality_commands(sub, command: str, help_text: str, modules: dict) -> None:
    import importlib

    p = sub.add_parser(command, help=help_text)
    per = p.add_subparsers(dest="modality", required=True, parser_class=_Parser)
    for modality, module_name in modules.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue   # that modality does not have this command yet
            raise
        sp = per.add_parser(modality, help=f"{command} {modality}")
        module.add_arguments(sp)
        sp.set_defaults(func=module.run)


def _add_modality_options(parser, table: str) -> list[str]:
    """Add every modality's flags from its app's ``table`` (ENCODE_OPTIONS or DECODE_OPTIONS), one
    group per modality; returns their destinations (unset flags stay None)."""
    from . import api

    dests = set()
    for modality, app in api.apps().items():
        group = parser.add_argument_group(f"{modality} options")
        for flag, kwargs in getattr(app, table):
            dest = api.option_dest(flag, kwargs)
            if dest in dests:
                continue   # declared by another modality already (same meaning)
            dests.add(dest)
            group.add_argument(flag, **{**kwargs, "dest": dest, "default": None})
    return sorted(dests)


def build_parser() -> argparse.ArgumentParser:
    from . import api

    p = _Parser(prog="ncodec", description="Neural compression: learned codecs with real bitstreams.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    e = sub.add_parser("encode", help="compress a file (or every file in a folder)")
    e.add_argument("input", help="an image, video or audio file; a folder of video frames; a folder to batch")
    e.add_argument("output")
    e.add_argument("--quality", "-q", type=float, default=None, help="quality, higher is better (images 1-6, audio 1-12)")
    e.add_argument("--model", "--codec", dest="model", default=None, help="codec/model name (see `ncodec models`)")
    e.set_defaults(func=cmd_encode, option_dests=_add_modality_options(e, "ENCODE_OPTIONS"))
    _add_common(e)

    d = sub.add_parser("decode", help="decompress an .ncz file (or every .ncz in a folder)")
    d.add_argument("input")
    d.add_argument("output")
    _add_common(d)
    d.set_defaults(func=cmd_decode, option_dests=_add_modality_options(d, "DECODE_OPTIONS"))

    i = sub.add_parser("info", help="show what an .ncz file holds")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list the shipped codecs")
    m.set_defaults(func=lambda a: print("\n".join(f"{n:<12} {mod:<6} {d}" for n, mod, d in api.codec_descriptions()))
                   or 0)

    demo = sub.add_parser("demo", help="encode/decode bundled sample photos and print bpp and PSNR")
    demo.add_argument("--model", default=api.DEFAULT_IMAGE_CODEC)
    demo.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 6])
    demo.add_argument("--device", choices=["cpu", "cuda"], default=None)
    demo.add_argument("images", nargs="*", help="extra image files to include")
    demo.set_defaults(func=cmd_demo)

    _add_modality_commands(sub, "train", "train a model (resumable)", TRAIN_MODULES)
    _add_modality_commands(sub, "eval", "rate-distortion sweep over a folder", EVAL_MODULES)

    b = sub.add_parser("bench", help="codec speed against classical codecs: image (transform vs entropy time, coder "
                       "overhead), video (fit s/epoch, decode fps), audio (x real time)")
    b.add_argument("input", help="image: a folder; video: a clip or a folder of frames; audio: a file or a folder")
    b.add_argument("--modality", choices=["image", "video", "audio"], default="image")
    b.add_argument("--models", "--codecs", dest="models", default=None,
                   help="comma-separated (defaults: image factorized,hyperprior,slice; video "
                        "hnerv,nerv,libx264,libx265,libsvtav1; audio ncodec:mdct,opus,aac,mp3)")
    b.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="image: default cpu; video/audio: default the CPU and the GPU when present")
    b.add_argument("--json", default=None, help="also write the report here")
    img = b.add_argument_group("image options")
    img.add_argument("--quality", type=float, default=None, help="default 3")
    img.add_argument("--limit", type=int, default=None, help="use only the first N images")
    img.add_argument("--precision", choices=["float32", "bfloat16"], default=None, help="transform precision")
    img.add_argument("--compile", action="store_true",
                     help="run the transforms through torch.compile (compiled for every image size before timing)")
    img.add_argument("--compressai", action="store_true", help="also run the same models through CompressAI's own path")
    img.add_argument("--classical", default=None,
                     help="Pillow codecs timed at the first model's bpp (default avif,webp; 'none' for none)")
    vid = b.add_argument_group("video options")
    vid.add_argument("--size", default=None, help="NeRV/HNeRV model size (default 0.1M)")
    vid.add_argument("--epochs", type=int, default=None, help="fit epochs timed (default 3)")
    vid.add_argument("--max-frames", type=int, default=None, help="first N frames of the clip (default 120, 0 = all)")
    aud = b.add_argument_group("audio options")
    aud.add_argument("--kbps", type=float, default=None, help="target bitrate (default 24)")
    aud.add_argument("--seconds", type=float, default=None, help="first N seconds of each file (default 20, 0 = all)")
    b.set_defaults(func=cmd_bench)
    pl = sub.add_parser("plot", help="draw RD curves from CompressAI-layout JSON files")
    pl.add_argument("json", nargs="+")
    pl.add_argument("-o", "--output", required=True, help="PNG or SVG")
    pl.add_argument("--metric", default="psnr-rgb")
    pl.add_argument("--title", default=None)
    pl.set_defaults(func=cmd_plot)
    return p


# ncodec bench: the options that belong to one modality only (dest -> modality)
BENCH_OPTIONS = {"quality": "image", "limit": "image", "precision": "image", "compile": "image", "compressai": "image", "classical": "image",
                 "size": "video", "epochs": "video", "max_frames": "video", "kbps": "audio", "seconds": "audio"}


def _bench_options(a) -> dict:
    """The modality options the user gave to ``ncodec bench``; refuses another modality's options."""
    given = {k: getattr(a, k) for k in BENCH_OPTIONS if getattr(a, k) is not None and getattr(a, k) is not False}
    wrong = [k for k in given if BENCH_OPTIONS[k] != a.modality]
    if wrong:
        flag = "--" + wrong[0].replace("_", "-")
        raise UsageError(f"{flag} applies to --modality {BENCH_OPTIONS[wrong[0]]}, not {a.modality}")
    return given


def cmd_bench(a) -> int:
    from .eval import bench

    options = _bench_options(a)
    src = Path(a.input)
    if a.models:
        options["models" if a.modality == "image" else "codecs"] = [m for m in a.models.split(",") if m]
    if a.modality == "image":
        if not src.is_dir():
            raise UsageError(f"{src} is not a folder")
        if "classical" in options:
            from .eval.classical import CLASSICAL_CODECS

            options["classical"] = [c for c in options["classical"].split(",") if c and c != "none"]
            unknown = [c for c in options["classical"] if c not in CLASSICAL_CODECS]
            if unknown:
                raise UsageError(f"unknown classical codec {unknown[0]!r}; known: {', '.join(CLASSICAL_CODECS)}")
        report = bench.bench_image(src, device=a.device or "cpu", **options)
        text = bench.format_report(report)
    else:
        run, fmt = {"video": (bench.bench_video, bench.format_video_report),
                    "audio": (bench.bench_audio, bench.format_audio_report)}[a.modality]
        try:
            report = run(src, device=a.device, **options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        text = fmt(report)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    print(text)
    return 0


def cmd_plot(a) -> int:
    from .eval import plot_rd

    plot_rd([Path(j) for j in a.json], Path(a.output), metric=a.metric, title=a.title)
    print(f"wrote {a.output}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``ncodec`` command; returns the exit code."""
    from .allocator import keep_freed_memory

    _quiet_warnings()
    keep_freed_memory()
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
