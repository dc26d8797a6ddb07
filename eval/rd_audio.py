"""Rate-distortion sweep of audio codecs over a folder (``ncodec eval audio DIR``).

Every file is coded by every codec at every target bitrate; the real bitrate (file bytes x 8 /
duration), SI-SDR, the multi-resolution mel distance, and where installed ViSQOL (speech mode
for speech, audio mode otherwise), PESQ-WB and STOI (speech only) are measured by the same code
for every codec, at the file's own rate and channel count.  Files are grouped by the first
folder level under DIR (``speech/``, ``music/`` ...; files directly in DIR form ``all``).

Writes, per group, one JSON per codec in CompressAI's results layout with ``kbps`` as the rate
(``{group}/{codec}.json``), a Bjøntegaard table per metric against the anchor (``bdrate.md``,
``bdrate.csv``) and plots (``{group}-{metric}.png``).  ncodec codecs run through the public API
(``ncodec.load_codec``), the classical ones through PyAV (:mod:`.classical_audio`).  Curves an
earlier sweep wrote (``--reference``, e.g. the committed Opus results) join the tables and plots
without being re-run, provided they were measured on the same files at the same targets; with
``--codecs ""`` and every curve given that way, the sweep only redraws the tables and plots.
Besides the Bjøntegaard deltas, ``bdrate.md`` compares every point with the anchor's curve at the
same real bitrate (:func:`equal_rate_rows`), which is what "better at equal bitrate" asks.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio.powerlaw import SIGNALS, SPEECH_MAX_RATE
from ..fileio import write_text
from . import audio_metrics as am
from . import bdrate
from .bdrate import bd_psnr, bd_rate, quality_at_rate
from .classical_audio import CODECS as CLASSICAL, align
from .plot import plot_rd

DEFAULT_KBPS = (6, 12, 24, 48, 64)
# metric -> True when higher is better
METRICS = {"si-sdr": True, "mel-distance": False, "visqol": True, "pesq-wb": True, "stoi": True}


def add_arguments(p) -> None:
    p.add_argument("folder", help="audio files, optionally in speech/ and music/ subfolders")
    p.add_argument("--codecs", default="ncodec:mdct,opus,aac,mp3", help="comma-separated; ncodec:NAME, opus, aac, mp3")
    p.add_argument("--kbps", default=",".join(map(str, DEFAULT_KBPS)), help="target bitrates, comma-separated")
    p.add_argument("--out", default="results/audio", help="folder for JSON, bdrate.md/csv and plots")
    p.add_argument("--anchor", default=None,
                   help="BD-rate reference: a codec of the sweep or a --reference curve (default: opus if swept or "
                        "given as a reference, else the first classical codec, else the first codec)")
    p.add_argument("--visqol-kbps", default="all",
                   help="targets at which to run ViSQOL ('all', 'none' or a list; it takes ~3 s per second of music)")
    p.add_argument("--seconds", type=float, default=0.0, help="use only the first N seconds of each file (0 = all)")
    p.add_argument("--visqol-seconds", type=float, default=0.0,
                   help="run ViSQOL on the first N seconds only (0 = all; it is slow: ~3 s per second of music)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--weights", default=None, help="weights file for the ncodec codec (default: the shipped one)")
    p.add_argument("--signal", choices=SIGNALS, default="auto",
                   help="what ncodec is told every input is (its encode --signal; auto: speech when sampled at "
                        f"{SPEECH_MAX_RATE // 1000} kHz or less)")
    p.add_argument("--no-postfilter", action="store_true",
                   help="decode ncodec:mdct's speech streams without its post-filter (to measure what it adds)")
    p.add_argument("--reference", nargs="+", default=[], metavar="JSON",
                   help="per-codec JSON files an earlier sweep of this folder wrote (e.g. "
                        "assets/audio/speech/speech/opus.json), added to the tables and plots without re-running "
                        "them; the anchor may be one of them")


def find_audio(folder: Path) -> dict[str, list[Path]]:
    """Audio files by group (first folder level under ``folder``; ``all`` for files at the top)."""
    from ..audio.io import READ_SUFFIXES

    groups: dict[str, list[Path]] = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.suffix.lower() in READ_SUFFIXES:
            rel = p.relative_to(folder).parts
            groups.setdefault(rel[0] if len(rel) > 1 else "all", []).append(p)
    return groups


class _NcodecRunner:
    """ncodec through the public API, with the same encode/decode shape as the classical codecs."""

    def __init__(self, name: str, device: str | None, weights: str | None = None, signal: str = "auto",
                 postfilter: bool = True):
        import ncodec

        self.codec = ncodec.load_codec(name, device, modality="audio", **({"weights": weights} if weights else {}))
        self.signal = signal
        self.description = getattr(self.codec, "description", name) + ("" if signal == "auto" else f"; signal {signal}")
        if not postfilter and hasattr(self.codec, "postfilter"):
            self.codec = copy.copy(self.codec)       # the loaded codec is shared (cached): switch a copy's off
            self.codec.postfilter = False
            self.description += "; decoded without the post-filter"

    def encode(self, x, rate, kbps):
        return self.codec.encode(x, rate, kbps=kbps, signal=self.signal)

    def decode(self, data, rate, channels):
        return self.codec.decode(data).samples


def load_runners(names: list[str], device: str | None, weights: str | None = None, signal: str = "auto",
                 postfilter: bool = True) -> dict:
    """Encoders by result name: ``ncodec:NAME`` (with ``weights``, ``signal`` and ``postfilter``) and the
    classical codecs."""
    runners = {}
    for n in names:
        if n.startswith("ncodec:"):
            runners[n.replace(":", "-")] = _NcodecRunner(n.split(":", 1)[1], device, weights, signal, postfilter)
        elif n in CLASSICAL:
            runners[n] = CLASSICAL[n]
        else:
            raise ValueError(f"unknown audio codec {n!r}; use ncodec:NAME or one of {', '.join(CLASSICAL)}")
    return runners


def measure(runner, x: np.ndarray, rate: int, kbps: float, group: str, visqol: bool, notes: set,
            visqol_seconds: float = 0.0) -> dict:
    """One coded point: real kbps, timings and every available metric."""
    t0 = time.perf_counter()
    data = runner.encode(x, rate, kbps)
    t1 = time.perf_counter()
    y = runner.decode(data, rate, len(x))
    t2 = time.perf_counter()
    y = align(x, y)
    seconds = x.shape[1] / rate
    point = {"target_kbps": kbps, "kbps": 8 * len(data) / seconds / 1000, "bytes": len(data),
             "si-sdr": am.si_sdr(x, y), "mel-distance": am.mel_distance(x, y, rate),
             "encoding_time": t1 - t0, "decoding_time": t2 - t1,
             "encode_realtime": seconds / (t1 - t0), "decode_realtime": seconds / (t2 - t1)}
    wanted = ["visqol"] if visqol else []
    if group == "speech":
        wanted += ["pesq-wb", "stoi"]
    for metric in wanted:
        missing = am.optional_metric_missing(metric.split("-")[0])
        if missing:
            notes.add(missing)
            continue
        if metric == "visqol":
            n = int(visqol_seconds * rate) or x.shape[1]
            point[metric] = am.visqol(x[:, :n], y[:, :n], rate, "speech" if group == "speech" else "audio")
        elif metric == "pesq-wb":
            point[metric] = am.pesq_wb(x, y, rate)
        else:
            point[metric] = am.stoi(x, y, rate)
    return point


def _mean_curve(points: list[dict]) -> dict:
    """Average over files per target bitrate (each metric over the files that have it)."""
    curve: dict[str, list] = {}
    keys = [k for k in dict.fromkeys(k for p in points for k in p) if k != "file"]
    for target in sorted({p["target_kbps"] for p in points}):
        at = [p for p in points if p["target_kbps"] == target]
        for key in keys:
            vals = [p[key] for p in at if key in p and p[key] is not None and math.isfinite(p[key])]
            curve.setdefault(key, []).append(float(np.mean(vals)) if vals else None)
    return curve


def bd_rows(curves: dict[str, dict], anchor: str) -> list[dict]:
    """Per codec and metric: BD-rate (%) and BD-metric against the anchor (mel distance negated so
    that, as for the others, a positive delta is better)."""
    rows = []
    ref = curves[anchor]
    for name, res in curves.items():
        for metric, higher in METRICS.items():
            row = {"codec": name, "metric": metric, "bd_rate_pct": math.nan, "bd_metric": math.nan, "note": ""}
            try:
                pts = [(r, m) for r, m in zip(res["kbps"], res.get(metric, [])) if m is not None]
                ref_pts = [(r, m) for r, m in zip(ref["kbps"], ref.get(metric, [])) if m is not None]
                if len(pts) < 2 or len(ref_pts) < 2:
                    raise ValueError(f"fewer than 2 {metric} points")
                sign = 1 if higher else -1
                args = ([r for r, _ in ref_pts], [sign * m for _, m in ref_pts],
                        [r for r, _ in pts], [sign * m for _, m in pts])
                row["bd_rate_pct"], row["bd_metric"] = bd_rate(*args), bd_psnr(*args)
            except ValueError as e:
                row["note"] = str(e)
            rows.append(row)
    return rows


def equal_rate_rows(curves: dict[str, dict], anchor: str) -> list[dict]:
    """Per codec (not the anchor) and target: each metric's value and the anchor's at the same real
    bitrate (its curve interpolated at this point's kbps; None outside the anchor's range)."""
    ref = curves[anchor]
    anchor_curves = {}                                  # metric -> (rates, values) of the anchor's points
    for metric in METRICS:
        pts = [(r, m) for r, m in zip(ref["kbps"], ref.get(metric, [])) if m is not None]
        if len(pts) >= 2:
            anchor_curves[metric] = ([r for r, _ in pts], [m for _, m in pts])
    rows = []
    for name, res in curves.items():
        if name == anchor:
            continue
        for i, (target, kbps) in enumerate(zip(res["target_kbps"], res["kbps"])):
            row = {"codec": name, "target_kbps": target, "kbps": kbps}
            for metric, (rates, values) in anchor_curves.items():
                value = res.get(metric, [None] * (i + 1))[i]
                if value is not None:
                    row[metric] = (value, quality_at_rate(rates, values, kbps, METRICS[metric]))
            rows.append(row)
    return rows


def _equal_rate_table(curves: dict[str, dict], anchor: str) -> list[str]:
    rows = equal_rate_rows(curves, anchor)
    metrics = [m for m in METRICS if any(m in r for r in rows)]
    md = ["", f"At equal rate: each point against **{anchor}**'s curve at the same real kbps (piecewise cubic "
              "over log kbps; - outside its range); better of the two in bold.", "",
          "| codec | target kbps | kbps | " + " | ".join(f"{m} / {anchor}" for m in metrics) + " |",
          "|---|---:|---:|" + "---:|" * len(metrics)]
    for r in rows:
        cells = []
        for m in metrics:
            value, at = r.get(m, (None, None))
            if value is None or at is None:
                cells.append("-" if value is None else f"{value:.4g} / -")
                continue
            ours_better = value > at if METRICS[m] else value < at
            cells.append(f"**{value:.4g}** / {at:.4g}" if ours_better else f"{value:.4g} / **{at:.4g}**")
        md.append(f"| {r['codec']} | {r['target_kbps']:g} | {r['kbps']:.2f} | " + " | ".join(cells) + " |")
    return md


def write_tables(out_dir: Path, groups: dict[str, dict], anchor: str, notes: set) -> str:
    """``bdrate.md`` / ``bdrate.csv`` plus tables of the measured points and of each point against the
    anchor at equal rate; returns the markdown."""
    md = [f"Audio RD sweep; BD deltas against **{anchor}** (piecewise cubic over log kbps). Negative BD-rate is "
          "better; BD-metric is the mean gain at equal rate (mel distance is negated: positive = better).", ""]
    csv_rows = []
    for group, curves in groups.items():
        md += [f"## {group}", "", "| codec | metric | BD-rate (%) | BD-metric |", "|---|---|---:|---:|"]
        for r in bd_rows(curves, anchor):
            cells = f"n/a ({r['note']}) | n/a" if r["note"] else f"{r['bd_rate_pct']:+.1f} | {r['bd_metric']:+.3f}"
            md.append(f"| {r['codec']} | {r['metric']} | {cells} |")
            csv_rows.append({"group": group, **r})
        keys = [k for k in ("kbps", *METRICS, "encode_realtime", "decode_realtime")
                if any(k in c for c in curves.values())]
        md += ["", "| codec | target kbps | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
        for name, res in curves.items():
            for i, target in enumerate(res["target_kbps"]):
                vals = [res.get(k, [None] * (i + 1))[i] for k in keys]
                md.append(f"| {name} | {target:g} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + " |")
        md += _equal_rate_table(curves, anchor)
        md.append("")
    md += [f"- {n}" for n in sorted(notes)]
    text = "\n".join(md) + "\n"
    write_text(out_dir / "bdrate.md", text, force=True)
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=["group", "codec", "metric", "bd_rate_pct", "bd_metric", "note"])
    w.writeheader()
    w.writerows(csv_rows)
    write_text(out_dir / "bdrate.csv", table.getvalue(), force=True)
    return text


def read_references(paths: list[Path], files: dict[str, list[Path]], kbps: list[float], measured: set[str],
                    seconds: float = 0.0) -> dict[str, dict[str, dict]]:
    """Earlier per-codec result JSONs by group and name, refused (ValueError) unless each was
    measured on exactly this sweep's files of its group at these targets, with no ``--seconds``
    cut, and is not named like a codec being measured."""
    if paths and seconds:
        raise ValueError("--reference needs whole files (drop --seconds)")
    refs: dict[str, dict[str, dict]] = {}
    for path in map(Path, paths):
        try:
            doc = json.loads(path.read_text())
            group, name, results = doc["group"], doc["name"], doc["results"]
            ref_files, targets = sorted(doc["files"]), [float(t) for t in results["target_kbps"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a result file of ncodec eval audio ({exc})") from None
        if name in measured or name in refs.get(group, {}):
            raise ValueError(f"{path}: {name!r} is already in the sweep")
        if ref_files != sorted(p.name for p in files.get(group, [])) or targets != [float(k) for k in kbps]:
            raise ValueError(f"{path} was measured on other files or bitrates than this sweep's {group!r} group")
        refs.setdefault(group, {})[name] = {"path": path, "results": results}
    return refs


def run_audio_eval(folder: Path, codecs: list[str], out_dir: Path, kbps: list[float], anchor: str = "opus",
                   visqol_kbps: set | None = None, seconds: float = 0.0, device: str | None = None,
                   visqol_seconds: float = 0.0, weights: str | None = None,
                   reference_jsons: list[Path] = (), signal: str = "auto", postfilter: bool = True) -> dict:
    """Run the sweep (see module doc); ``visqol_kbps`` None means at every bitrate; ``weights``
    replaces the ncodec codec's shipped weights file; ``reference_jsons`` are earlier results
    (:func:`read_references`) to include; ``signal`` is what ncodec is told the inputs are; ``postfilter``
    False decodes ``mdct`` speech without its post-filter."""
    from ..audio.io import read_audio

    files = find_audio(folder)
    if not files:
        raise ValueError(f"no audio files under {folder}")
    runners = load_runners(codecs, device, weights, signal, postfilter)
    references = read_references(reference_jsons, files, kbps, set(runners), seconds)
    lacking = [g for g in files if anchor not in runners and anchor not in references.get(g, {})]
    if lacking:
        raise ValueError(f"anchor {anchor!r} is neither among the codecs nor the reference curves "
                         f"(group {', '.join(lacking)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: set = set()
    summary: dict[str, dict] = {}
    jobs = [(g, f, n, k) for g, fs in files.items() for f in fs for n in runners for k in kbps]
    points: dict = {}
    audio_cache: dict = {}
    for group, path, name, target in tqdm(jobs, desc="audio RD", unit="point", dynamic_ncols=True):
        if path not in audio_cache:
            audio_cache.clear()
            x, rate = read_audio(path)
            if seconds:
                x = x[:, :int(seconds * rate)]
            audio_cache[path] = (x, rate)
        x, rate = audio_cache[path]
        visqol = visqol_kbps is None or target in visqol_kbps
        p = measure(runners[name], x, rate, target, group, visqol, notes, visqol_seconds)
        points.setdefault(group, {}).setdefault(name, []).append({"file": path.name, **p})
    for group in files:
        gdir = out_dir / group
        gdir.mkdir(exist_ok=True)
        summary[group] = {}
        jsons = {}
        for name, pts in points.get(group, {}).items():
            curve = _mean_curve(pts)
            summary[group][name] = curve
            doc = {"name": name, "description": runners[name].description, "group": group,
                   "files": sorted({p["file"] for p in pts}), "results": curve, "per_file": pts}
            jsons[name] = gdir / f"{name}.json"
            write_text(jsons[name], json.dumps(doc, indent=2) + "\n", force=True)
        for name, ref in references.get(group, {}).items():
            summary[group][name], jsons[name] = ref["results"], ref["path"]
        for metric in METRICS:
            if any(metric in c for c in summary[group].values()):
                plot_rd([j for n, j in jsons.items() if metric in summary[group][n]],
                        out_dir / f"{group}-{metric}.png", metric=metric, rate="kbps", title=f"{group}: {metric}")
    write_tables(out_dir, summary, anchor, notes)
    return summary


def default_anchor(codecs: list[str], references=()) -> str:
    """The BD-rate anchor among ``codecs`` and the ``references`` files' curves, by result name: opus,
    else the first classical codec, else the first codec."""
    names = [c.replace(":", "-") for c in codecs] + [json.loads(Path(r).read_text()).get("name", Path(r).stem) for r in references]
    return bdrate.default_anchor(names, CLASSICAL, "opus")


def run(a) -> int:
    """``ncodec eval audio``."""
    from ..errors import InputError, UsageError, check_input

    folder = check_input(a.folder, folder=True)
    if not find_audio(folder):
        raise InputError(f"no audio files under {folder}")
    for ref in a.reference:
        try:
            json.loads(check_input(ref).read_text())
        except ValueError as exc:       # not UTF-8, or not JSON
            raise InputError(f"{ref} is not a JSON file ({exc})") from None
    codecs = [c for c in a.codecs.split(",") if c]
    if not codecs:
        raise UsageError("--codecs names no codec")
    try:
        kbps = [float(k) for k in a.kbps.split(",") if k]
        vk = None if a.visqol_kbps == "all" else set() if a.visqol_kbps == "none" else \
            {float(k) for k in a.visqol_kbps.split(",") if k}
    except ValueError:
        raise UsageError("--kbps and --visqol-kbps take comma-separated numbers") from None
    try:
        run_audio_eval(folder, codecs, Path(a.out), kbps, a.anchor or default_anchor(codecs, a.reference), vk, a.seconds,
                       a.device, a.visqol_seconds, a.weights, a.reference, a.signal, not a.no_postfilter)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print((Path(a.out) / "bdrate.md").read_text())
    return 0
