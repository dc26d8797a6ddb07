"""Rate-distortion training of the audio model (``ncodec train audio``).

The MDCT is fixed, so the corpus is transformed once (mono files as they are, stereo files
as mid and side, every file at two frame alignments) and training draws random crops of
frames from it, with random gain (-24..+6 dB) and polarity.  One random quality per crop
(gain units make one model cover every rate); loss = lambda(q) * MSE + bits per sample +
``--mel-weight`` * mel, with MSE in the orthonormal MDCT domain (= waveform MSE) and mel the
multi-resolution log-mel L1 (:mod:`.mel`, the eval's mel distance) between the inverse MDCTs
of the crop and of its reconstruction, both resampled to the crop's source rate (as the
decoder restores it).  The reconstruction is the decoder's (:meth:`AudioModel.reconstruct`,
noise fill included), so the learned noise-fill shaper (``--fill-width``) trains on it.
``--init`` warm-starts from a safetensors weights file (its config, with ``--noise-fill`` /
``--fill-width`` applied; without its post-filter, which fits only the codec it was trained on).
``--postfilter WIDTH`` trains that post-filter instead (:mod:`.postfilter_train`).  Files named in
``--exclude`` (the evaluation set) are never read.
The loop is :class:`ncodec.training.TrainingLoop`: checkpoints every few minutes, at the end and on
Ctrl-C or SIGTERM; rerunning with the same ``--out`` resumes.  ``--export`` writes the safetensors
weights at the end.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from ..errors import InputError, UsageError
from ..latent import interpolate_levels
from ..training import RDOptimizer, TrainingLoop, export, run_folder
from .io import READ_SUFFIXES, AudioReader
from .mdct import frame_count, imdct, mdct
from .mel import log_mel_l1
from .model import AudioModel, AudioModelConfig

# Held out for evaluation (assets/audio/ figures); never trained on.
# Matched by recording (the name up to its first dot), so other encodings of the same recording
# (``3436-172162-0000.flac``) stay out too; ``encodec_test_24k`` is the 48 kHz file at 24 kHz.
HELD_OUT = ("p232_003.wav", "3436-172162-0000.hq.ogg", "encodec_test_48k.wav",
            "admiralbob77_-_Choice_-_Drum-bass.hq.ogg", "encodec_test_24k.wav")
CATEGORY_WEIGHTS = {"speech": 0.4, "music": 0.5, "other": 0.1}
DEFAULT_HOP = 480              # a new model's MDCT hop (the shipped model's)
CROP_SAMPLES = 46080           # default crop: 0.96 s at 48 kHz


WALLOC_SEGMENT = 16384         # WaLLoC training segments: about 1 s at 16 kHz, a whole number of packets
WALLOC_PRIOR_LR_SCALE = 10.0   # its densities learn 10x faster than the transforms (as the image recipe)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", choices=("mdct", "walloc"), default="mdct",
                   help="the model to train: mdct (default) or walloc (16 kHz; takes --data, --out, --steps, "
                        "--batch, --lr, --max-minutes, --stop-after-minutes, --export, --threads, --amp, --device, "
                        "--seed; the held-out evaluation files are never read)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "audio"),
                   help="folder of training audio (subfolders speech/, music/, other/ weight the sampling)")
    p.add_argument("--out", default="runs/audio/default", help="run folder (checkpoint.pt, log.jsonl); rerun to resume")
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=None,
                   help="frames per crop (multiple of 4; one hop each; default: 0.96 s, 96 frames at hop 480)")
    p.add_argument("--hop", type=int, choices=(240, 480, 960), default=None,
                   help="MDCT hop of a new model in samples at 48 kHz (default 480: 10 ms frames, 20 ms windows, "
                        "as shipped)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--mel-weight", type=float, default=None,
                   help="weight of the multi-resolution log-mel L1 in the loss (default 0: MSE and rate only, the "
                        "shipped recipe; 2-4 was tried and not shipped, see docs/experiments.md; 4 for --postfilter)")
    p.add_argument("--init", default=None, help="warm start from a safetensors weights file (e.g. the shipped one)")
    p.add_argument("--postfilter", type=int, default=0, metavar="WIDTH",
                   help="train only a speech post-filter of this width (e.g. 8) on the decoded speech of --init's "
                        "codec; --data is then a folder of speech")
    p.add_argument("--noise-fill", type=float, default=None,
                   help="zero-bin noise-fill energy fraction (default: --init's, else 0.25)")
    p.add_argument("--fill-width", type=int, default=None,
                   help="width of the learned noise-fill shaper, e.g. 16 (default: --init's, else 0 = none)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="schedule length in wall time (lr drops at 85%%)")
    p.add_argument("--stop-after-minutes", type=float, default=0.0, help="end this invocation early (resumable)")
    p.add_argument("--export", default=None, help="write safetensors weights here at the end")
    p.add_argument("--exclude", nargs="*", default=list(HELD_OUT),
                   help="file names never to train on (any encoding of the same recording stays out too)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the convolutions (2.4x faster on CPUs with AVX512-BF16, 2.7x slower "
                        "on an AVX2-only EPYC: use --no-amp there)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--seed", type=int, default=0)


def recording(name: str) -> str:
    """The recording a file name stands for: the name up to its first dot."""
    return name.split(".")[0]


def training_files(folder: Path, exclude: set[str]) -> list[Path]:
    """The audio files under ``folder`` whose recording is not one of ``exclude``'s (any encoding of
    a held-out recording stays out); InputError if there are none."""
    held_out = {recording(name) for name in exclude}
    files = sorted(p for p in Path(folder).rglob("*")
                   if p.suffix.lower() in READ_SUFFIXES and recording(p.name) not in held_out)
    if not files:
        raise InputError(f"no training audio ({', '.join(sorted(READ_SUFFIXES))}) under {folder}")
    return files


class FrameCorpus:
    """MDCT frames of every training signal, held in RAM, sampled as random crops."""

    def __init__(self, folder: Path, files: list[Path], hop: int, rate: int, rng: random.Random):
        """``files`` under ``folder`` (see :func:`training_files`); their first folder below ``folder``
        is their category."""
        self.signals: dict[str, list[tuple[torch.Tensor, int]]] = {}
        for path in tqdm(files, desc="transforming corpus", unit="file", leave=False):
            reader = AudioReader(path, rate)
            x = torch.from_numpy(np.concatenate(list(reader), axis=1))
            source_rate = min(reader.rate, rate)
            chans = [x[0]] if len(x) == 1 else [x.mean(0), (x[0] - x[1]) / 2]
            category = path.relative_to(folder).parts[0] if len(path.relative_to(folder).parts) > 1 else "other"
            for c in chans:
                for shift in (0, hop // 2):
                    s = c[shift:]
                    t = frame_count(len(s), hop)
                    padded = torch.nn.functional.pad(s, (hop, (t + 1) * hop - len(s) - hop))
                    self.signals.setdefault(category, []).append((mdct(padded[None], hop)[0, :, 0].float(), source_rate))
        self.categories = [c for c in CATEGORY_WEIGHTS if c in self.signals] or list(self.signals)
        self.rng, self.files = rng, len(files)

    def batch(self, n: int, frames: int) -> tuple[torch.Tensor, list[int]]:
        """``n`` random crops of ``frames`` frames and the source rate of each."""
        out = torch.empty(n, self.signals[self.categories[0]][0][0].shape[0], 1, frames)
        rates = []
        weights = [CATEGORY_WEIGHTS.get(c, 0.1) for c in self.categories]
        for i in range(n):
            pool = self.signals[self.rng.choices(self.categories, weights)[0]]
            sig, source_rate = self.rng.choices(pool, [s.shape[1] for s, _ in pool])[0]
            rates.append(source_rate)
            if sig.shape[1] < frames:
                sig = torch.nn.functional.pad(sig, (0, frames - sig.shape[1]))
            start = self.rng.randrange(sig.shape[1] - frames + 1)
            gain = 10 ** (self.rng.uniform(-24, 6) / 20) * self.rng.choice((-1, 1))
            out[i, :, 0] = sig[:, start:start + frames] * gain
        return out, rates


def mel_loss(coefs: torch.Tensor, coefs_hat: torch.Tensor, rates: list[int], config: AudioModelConfig) -> torch.Tensor:
    """Batch mean of the log-mel L1 between the waveforms of ``coefs`` and ``coefs_hat`` (their
    complete hops), each pair resampled to its source rate."""
    hop = config.hop
    x, y = (imdct(c, hop)[:, hop:-hop] for c in (coefs, coefs_hat))
    total = x.new_zeros(())
    for rate in sorted(set(rates)):
        idx = torch.tensor([i for i, r in enumerate(rates) if r == rate])
        xr, yr = (torchaudio.functional.resample(v[idx], config.sample_rate, rate) for v in (x, y))
        total = total + log_mel_l1(xr, yr, rate) * len(idx)
    return total / len(rates)


def rd_loss(model: AudioModel, out: dict, coefs: torch.Tensor, quality: torch.Tensor, rates: list[int],
            mel_weight: float):
    """Loss, mean bits per sample, mean SNR (dB) and mel term of one forward pass."""
    count = coefs.shape[1] * coefs.shape[3]
    err = (out["coefs_hat"] - coefs).pow(2).mean(dim=(1, 2, 3))
    bits = sum(-torch.log2(lik).sum(dim=tuple(range(1, lik.dim()))) for lik in out["likelihoods"]) / count
    lam_q = interpolate_levels(model.config.lambdas().to(coefs.device).log(), quality)
    mel = mel_loss(coefs, out["coefs_hat"], rates, model.config) if mel_weight else coefs.new_zeros(())
    loss = (lam_q * err + bits).mean() + mel_weight * mel
    snr = 10 * torch.log10(coefs.pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-12) / err.clamp_min(1e-12))
    return loss, bits.mean(), snr.mean(), mel


def train_walloc(args) -> int:
    """``--codec walloc``: the WaLLoC model trained by the image models' rate-distortion loop on audio
    segments (:class:`ncodec.walloc.AudioSegments`)."""
    from ..image.train import TrainOptions, train

    train(TrainOptions(arch="walloc-audio", data=Path(args.data), out=Path(args.out), steps=args.steps,
                       batch=args.batch, crop=WALLOC_SEGMENT, lr=args.lr, device=args.device or "cpu",
                       max_minutes=args.max_minutes, stop_after_minutes=args.stop_after_minutes, seed=args.seed,
                       export=Path(args.export) if args.export else None, amp=args.amp, threads=args.threads,
                       prior_lr_scale=WALLOC_PRIOR_LR_SCALE))
    return 0


def run(args) -> int:
    """Train (or resume) the audio model; exports weights if ``--export`` is given."""
    if args.codec == "walloc":
        return train_walloc(args)
    if args.postfilter:
        from .postfilter_train import train_postfilter

        return train_postfilter(args, training_files(Path(args.data), set(args.exclude)))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or "cpu")
    if args.frames is not None and (args.frames < 4 or args.frames % 4):
        raise UsageError("--frames must be a positive multiple of 4")
    if args.hop and args.init:
        raise UsageError("--hop makes a new model; a warm start keeps the hop of its weights (drop --hop or --init)")
    files = training_files(Path(args.data), set(args.exclude))      # before anything is written
    ckpt, log = run_folder(Path(args.out))
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    state = ckpt.load(device)
    if state is not None:
        config = AudioModelConfig.from_dict(state["config"])
        if args.hop and args.hop != config.hop:
            raise UsageError(f"{ckpt.path} holds a model with hop {config.hop}; resume without --hop {args.hop}")
        model = AudioModel(config)
    else:
        from .weights import training_model

        hop = args.hop or (None if args.init else DEFAULT_HOP)      # a warm start keeps its weights' hop
        overrides = {k: v for k, v in (("noise_fill", args.noise_fill), ("fill_width", args.fill_width), ("hop", hop))
                     if v is not None}
        overrides["postfilter"] = 0        # a post-filter fits the codec it was trained on: retrain it after
        model = training_model(Path(args.init) if args.init else None, **overrides)
        config = model.config
    model = model.to(device)
    named = dict(model.named_parameters())
    optimizer = RDOptimizer([([p for n, p in named.items() if not n.endswith(".quantiles") and n != "log_gain"], 1.0),
                             ([named["log_gain"]], 0.1)],
                            [p for n, p in named.items() if n.endswith(".quantiles")], args.lr)
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state)
        step, elapsed = state["step"], state["elapsed"]
        rng.seed(args.seed + step)
        torch.manual_seed(args.seed + step)
        print(f"resuming from step {step}")
    frames = args.frames or CROP_SAMPLES // config.hop
    corpus = FrameCorpus(Path(args.data), files, config.hop, config.sample_rate, rng)
    print(f"corpus: {corpus.files} files, " + ", ".join(
        f"{c} {sum(s.shape[1] for s, _ in corpus.signals[c]) // 2} frames" for c in corpus.categories))

    def checkpoint() -> dict:
        return {"model": model.state_dict(), **optimizer.state_dict(), "step": loop.step, "elapsed": loop.elapsed,
                "config": config.to_dict()}

    model.train()
    loop = TrainingLoop(args.steps, "train audio", checkpoint, ckpt, log, start=step, elapsed=elapsed,
                        max_minutes=args.max_minutes, stop_after_minutes=args.stop_after_minutes,
                        shown=("loss", "kbps", "snr", "mel"))
    with loop:
        while not loop.over():
            lr = loop.lr(args.lr)
            optimizer.set_lr(lr)
            coefs, rates = corpus.batch(args.batch, frames)
            coefs = coefs.to(device)
            quality = torch.rand(args.batch, device=device) * (config.levels - 1)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.amp):
                out = model(coefs, quality)
            loss, bits, snr, mel = rd_loss(model, out, coefs, quality, rates, args.mel_weight or 0.0)
            aux = optimizer.step(loss, model.aux_loss)
            loop.end_step(lambda: {"loss": round(loss.item(), 4),
                                   "kbps": round(bits.item() * config.sample_rate / 1000, 2),
                                   "snr": round(snr.item(), 2), "mel": round(mel.item(), 4),
                                   "aux": round(aux.item(), 1), "lr": lr})
    if args.export:
        from .weights import export_model
        export(export_model, model, Path(args.export), {"trained_steps": loop.step, "held_out": list(args.exclude)})
    return 0


def main(argv=None) -> int:
    """``python -m ncodec.audio.train`` (the same as ``ncodec train audio``)."""
    p = argparse.ArgumentParser(prog="ncodec train audio")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
