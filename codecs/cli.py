"""The ``ncodec`` command line.  Every failure ends as one line on stderr and an exit code
per error class (see :mod:`ncodec.errors`); no tracebacks."""
from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import sys
import threading
from functools import partial
from pathlib import Path

from .errors import InputError, NcodecError, OutputError, UsageError, check_input


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


class _Commands(argparse._SubParsersAction):
    """Subcommands whose arguments a function adds: at once, or with ``defer`` only to the one
    chosen, so that a command imports the modules it runs and no others."""

    def __init__(self, *args, defer: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._defer, self._pending = defer, {}

    def add_command(self, name: str, fill, help: str) -> None:
        """Subcommand ``name``; ``fill(parser)`` adds its arguments and sets its ``func``."""
        parser = self.add_parser(name, help=help)
        if self._defer:
            self._pending[name] = fill
        else:
            fill(parser)

    def __call__(self, parser, namespace, values, option_string=None):
        fill = self._pending.pop(values[0], None)
        if fill is not None:
            fill(self.choices[values[0]])
        super().__call__(parser, namespace, values, option_string)


def _add_common(p):
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where transforms run (default: cuda if present)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="folders: files coded in N worker processes (default 1, which already uses every "
                        "core through torch's threads; more pays on many-core machines)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="folders: code the files on the Dask cluster whose scheduler is at ADDRESS (e.g. "
                        "tcp://host:8786; workers need ncodec and the same paths)")


def _quiet_warnings() -> None:
    """Library warnings that mean nothing to a command-line user are dropped, the others shown
    as one line."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TF32.*")
    warnings.formatwarning = lambda message, *_, **__: f"ncodec: warning: {message}\n"


def _briefly_spinning_threads() -> None:
    """torch's OpenMP workers spin only briefly (20,000 iterations) before they sleep while they
    wait for work, unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` says otherwise (it must be set
    before torch loads).  Long spinning takes the cores from busy neighbours and stalls every
    parallel step while one worker is descheduled: on a 2-core machine shared with another 2-thread
    job, a Kodak image's slice decode took 2.1 s in its entropy networks with spinning threads,
    0.36 s with sleeping ones.  Never spinning (``OMP_WAIT_POLICY=PASSIVE``) halves the speed of
    the many small steps of fitting instead (a video fit: 2.4 s an epoch, 1.2 s with brief
    spinning); brief spinning keeps both."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "20000")


def _init_worker(threads: int) -> None:
    import torch

    from .allocator import keep_freed_memory

    torch.set_num_threads(threads)
    _quiet_warnings()
    keep_freed_memory()


def _batch(src: Path, dst: Path, wanted, task, jobs: int | None, cluster: str | None = None) -> int:
    """Run ``task(file, dst)`` (picklable; returns the line to print) over the ``wanted`` files of
    folder ``src`` into folder ``dst`` in ``jobs`` processes (or on the Dask ``cluster``), keep
    going past failures, exit non-zero if any failed."""
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

    if cluster:
        import torch

        from .cluster import cluster_executor, with_threads

        src, dst = src.resolve(), dst.resolve()
        files = [f.resolve() for f in files]
        with cluster_executor(cluster) as pool:
            job = with_threads(task, torch.get_num_threads())
            futures = {pool.submit(job, f, dst): f for f in files}
            for fut in as_completed(futures):
                finish(futures[fut], fut.result)
    elif jobs == 1:
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
    """The modality options the user actually gave (flags the apps declare in ``encode_options``
    or ``decode_options``)."""
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
    from . import api, registry

    src, dst = Path(a.input), Path(a.output)
    options = dict(codec=a.model, quality=a.quality, device=a.device, force=a.force, **_modality_options(a))
    single = not src.is_dir() or dst.suffix.lower() == ".ncz"   # a folder of video frames into one stream
    if single:
        _folders_only(a)
        print(_encode_task(src, dst, options))
        return 0
    apps = [api.app_for_input(src, a.model)] if a.model else list(registry.apps().values())
    task = partial(_encode_task, options=options, into_folder=True)
    return _batch(src, dst, lambda f: any(app.accepts(f) for app in apps), task, a.jobs, a.cluster)


def cmd_decode(a) -> int:
    src, dst = Path(a.input), Path(a.output)
    options = dict(device=a.device, force=a.force, **_modality_options(a))
    if src.is_dir():   # each stream read once; its modality picks the output suffix
        task = partial(_decode_task, options=options, into_folder=True)
        return _batch(src, dst, lambda f: f.suffix.lower() == ".ncz", task, a.jobs, a.cluster)
    _folders_only(a)
    print(_decode_task(src, dst, options))
    return 0


def _folders_only(a) -> None:
    if a.cluster:
        raise UsageError("--cluster spreads the files of a folder over a cluster; a single file runs here")


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


def cmd_models(a) -> int:
    from . import api

    print("\n".join(f"{n:<12} {mod:<6} {d}" for n, mod, d in api.codec_descriptions()))
    return 0


def cmd_demo(a) -> int:
    """Encode and decode scikit-image's bundled photographs with the default model."""
    from skimage import data as skdata

    from . import api
    from .image.io import read_image

    codec = api.load_codec(a.model, a.device, modality="image")
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


# ncodec bench: the options that belong to one modality only (dest -> modality)
BENCH_OPTIONS = {"quality": "image", "limit": "image", "precision": "image", "compile": "image", "compressai": "image",
                 "classical": "image", "size": "video", "epochs": "video", "max_frames": "video", "kbps": "audio",
                 "seconds": "audio"}


def _bench_options(a) -> dict:
    """The modality options the user gave to ``ncodec bench``; refuses another modality's options
    and negative counts."""
    given = {k: getattr(a, k) for k in BENCH_OPTIONS if getattr(a, k) is not None and getattr(a, k) is not False}
    wrong = [k for k in given if BENCH_OPTIONS[k] != a.modality]
    if wrong:
        flag = "--" + wrong[0].replace("_", "-")
        raise UsageError(f"{flag} applies to --modality {BENCH_OPTIONS[wrong[0]]}, not {a.modality}")
    negative = [k for k in ("limit", "epochs", "max_frames", "seconds") if k in given and given[k] < 0]
    if negative:
        raise UsageError(f"--{negative[0].replace('_', '-')} must not be negative")
    return given


def _bench_input(src: Path, modality: str) -> Path:
    """``src`` if it holds what ``ncodec bench --modality MODALITY`` measures, else an InputError."""
    check_input(src, folder=modality == "image" or src.is_dir())
    if modality == "image":
        from .eval.rd_image import find_images

        try:
            find_images(src)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    elif modality == "audio" and src.is_dir():
        from .eval.rd_audio import find_audio

        if not find_audio(src):
            raise InputError(f"no audio files under {src}")
    return src


def cmd_bench(a) -> int:
    from .fileio import check_output, write_text

    options = _bench_options(a)
    if a.models is not None:
        models = [m for m in a.models.split(",") if m]
        if not models:
            raise UsageError("--models names no model")
        options["models" if a.modality == "image" else "codecs"] = models
    if a.json:
        check_output(Path(a.json), force=True)
    src = _bench_input(Path(a.input), a.modality)
    from .eval import bench

    if "classical" in options:
        from .eval.classical import CLASSICAL_CODECS

        options["classical"] = [c for c in options["classical"].split(",") if c and c != "none"]
        unknown = [c for c in options["classical"] if c not in CLASSICAL_CODECS]
        if unknown:
            raise UsageError(f"unknown classical codec {unknown[0]!r}; known: {', '.join(CLASSICAL_CODECS)}")
    run, fmt = {"image": (partial(bench.bench_image, device=a.device or "cpu"), bench.format_report),
                "video": (partial(bench.bench_video, device=a.device), bench.format_video_report),
                "audio": (partial(bench.bench_audio, device=a.device), bench.format_audio_report)}[a.modality]
    try:
        report = run(src, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if a.json:
        write_text(Path(a.json), json.dumps(report, indent=2), force=True)
    print(fmt(report))
    return 0


def cmd_plot(a) -> int:
    output = Path(a.output)
    if output.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"-o/--output must name a .png or .svg file, not {output.name!r}")
    paths = [check_input(j) for j in a.json]
    from .eval.plot import plot_rd
    from .eval.rd_image import read_curves

    for path in paths:
        try:
            read_curves(path)
        except ValueError as exc:       # not JSON, or not RD curves
            raise InputError(str(exc)) from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        plot_rd(paths, output, metric=a.metric, title=a.title)
    except ValueError as exc:       # no curve has the metric asked for
        raise UsageError(f"{exc} (--metric)") from None
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
    print(f"wrote {output}")
    return 0


def _add_modality_options(parser, command: str) -> list[str]:
    """Add every modality's flags for ``command`` ("encode" or "decode", from its app's
    ``encode_options``/``decode_options``), one group per modality; returns their destinations
    (unset flags stay None)."""
    from . import registry

    dests = set()
    for modality, app in registry.apps().items():
        group = parser.add_argument_group(f"{modality} options")
        for flag, kwargs in app.encode_options() if command == "encode" else app.decode_options():
            dest = registry.option_dest(flag, kwargs)
            if dest in dests:
                continue   # declared by another modality already (same meaning)
            dests.add(dest)
            group.add_argument(flag, **{**kwargs, "dest": dest, "default": None})
    return sorted(dests)


def _encode_arguments(e) -> None:
    e.add_argument("input", help="an image, video or audio file; a folder of video frames; a folder to batch")
    e.add_argument("output")
    e.add_argument("--quality", "-q", type=float, default=None, help="quality, higher is better (images 1-6, audio 1-12)")
    e.add_argument("--model", "--codec", dest="model", default=None, help="codec/model name (see `ncodec models`)")
    e.set_defaults(func=cmd_encode, option_dests=_add_modality_options(e, "encode"))
    _add_common(e)


def _decode_arguments(d) -> None:
    d.add_argument("input")
    d.add_argument("output")
    _add_common(d)
    d.set_defaults(func=cmd_decode, option_dests=_add_modality_options(d, "decode"))


def _info_arguments(i) -> None:
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)


def _demo_arguments(demo) -> None:
    from . import api

    demo.add_argument("--model", default=api.DEFAULT_IMAGE_CODEC)
    demo.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 6])
    demo.add_argument("--device", choices=["cpu", "cuda"], default=None)
    demo.add_argument("images", nargs="*", help="extra image files to include")
    demo.set_defaults(func=cmd_demo)


def _train(run, a) -> int:
    """Run a training command once its data folder (``--data``) is known to exist."""
    check_input(a.data, folder=True)
    return run(a)


def _module_arguments(command: str, module_name: str, p) -> None:
    """Arguments and ``func`` of ``ncodec COMMAND MODALITY`` from a module with
    ``add_arguments(parser)`` and ``run(args)``."""
    import importlib

    module = importlib.import_module(module_name)
    module.add_arguments(p)
    p.set_defaults(func=partial(_train, module.run) if command == "train" else module.run)


def _modality_commands(command: str, defer: bool, p) -> None:
    """``ncodec COMMAND MODALITY`` for every modality whose app names a module for ``command``
    ("train" or "eval") in its ``COMMANDS``."""
    from . import registry

    per = p.add_subparsers(dest="modality", required=True, parser_class=_Parser, action=_Commands, defer=defer)
    for modality, app in registry.apps().items():
        if command in app.COMMANDS:
            per.add_command(modality, partial(_module_arguments, command, app.COMMANDS[command]),
                            help=f"{command} {modality}")


def _bench_arguments(b) -> None:
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


def _plot_arguments(pl) -> None:
    pl.add_argument("json", nargs="+")
    pl.add_argument("-o", "--output", required=True, help="PNG or SVG")
    pl.add_argument("--metric", default="psnr-rgb")
    pl.add_argument("--title", default=None)
    pl.set_defaults(func=cmd_plot)


def build_parser(defer: bool = False) -> argparse.ArgumentParser:
    """The ``ncodec`` parser.  With ``defer`` (as :func:`main` builds it) a subcommand gets its
    arguments only once it is chosen, so a command imports what it runs and no more; without,
    every subcommand is complete (for documentation and introspection)."""
    p = _Parser(prog="ncodec", description="Neural compression: learned codecs with real bitstreams.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, action=_Commands, defer=defer)
    sub.add_command("encode", _encode_arguments, help="compress a file (or every file in a folder)")
    sub.add_command("decode", _decode_arguments, help="decompress an .ncz file (or every .ncz in a folder)")
    sub.add_command("info", _info_arguments, help="show what an .ncz file holds")
    sub.add_command("models", lambda m: m.set_defaults(func=cmd_models), help="list the shipped codecs")
    sub.add_command("demo", _demo_arguments, help="encode/decode bundled sample photos and print bpp and PSNR")
    sub.add_command("train", partial(_modality_commands, "train", defer), help="train a model (resumable)")
    sub.add_command("eval", partial(_modality_commands, "eval", defer), help="rate-distortion sweep over a folder")
    sub.add_command("bench", _bench_arguments,
                    help="codec speed against classical codecs: image (transform vs entropy time, coder overhead), "
                         "video (fit s/epoch, decode fps), audio (x real time)")
    sub.add_command("plot", _plot_arguments, help="draw RD curves from CompressAI-layout JSON files")
    return p


def _end_process(code: int) -> None:
    """End the process at once, without the interpreter tearing down every module (0.3-0.4 s once
    torch is loaded, of a 2.5 s Kodak decode): every output is closed by then; the exit handlers run
    and the standard streams are flushed first.  Returns instead while a non-daemon thread runs or a
    profiler or tracer (cProfile, a debugger) watches, which would lose what it writes at the end."""
    if sys.getprofile() or sys.gettrace() or \
            any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def main(argv=None) -> int:
    """Entry point of the ``ncodec`` command; returns the exit code.  As the program itself (``argv``
    None: the process's own command line) it ends the process when done (:func:`_end_process`)."""
    code = _command(argv)
    if argv is None:
        _end_process(code)
    return code


def _command(argv) -> int:
    """Run one command line; the exit code."""
    from .allocator import keep_freed_memory

    _quiet_warnings()
    _briefly_spinning_threads()
    keep_freed_memory()
    try:
        args = build_parser(defer=True).parse_args(argv)
        return int(args.func(args) or 0)
    except NcodecError as exc:
        print(f"ncodec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ncodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:     # the reader went away (``ncodec info x.ncz | head -1``): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        print("ncodec: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # last resort: one line, never a traceback
        print(f"ncodec: internal error: {type(exc).__name__}: {exc} (please report this)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
