"""Training of the speech post-filter (:mod:`.postfilter`): ``ncodec train audio --postfilter WIDTH``.

The codec of ``--init`` codes the speech files of ``--data`` (read at 16 kHz mono, as ``--signal
auto`` takes speech) in segments of one chunk, each at random qualities, and keeps what its decoder
has before the post-filter (:meth:`~.codec.AudioCodec.decoded_chunk`) beside the true MDCT
coefficients, for the bins the post-filter shapes.  Training draws crops of them and minimises

    MSE(after) / MSE(before) + mel_weight * mel(after) / mel(before)

(``before``: the decoder without the post-filter; mel: the log-mel L1 of :mod:`.mel` on the 16 kHz
waveforms).  The MSE term alone would silence the noise fill; the mel term keeps its level where
the spectrum needs it.  Only the post-filter learns; ``--export`` writes the ``--init`` model with it.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from ..errors import UsageError
from ..training import TrainingLoop, export, run_folder, set_lr
from . import powerlaw
from .codec import AudioCodec, encoder_input
from .io import read_audio
from .latent import AudioLatentCodec
from .mdct import imdct, mdct
from .mel import log_mel_l1

SPEECH_RATE = 16000
SEGMENT_SECONDS = 4.8         # one chunk each
MIN_SEGMENT_SECONDS = 1       # shorter files and tails are left out (crops are at most 96 frames)
MAX_CROP = 96
PASSES = 2                    # random qualities per segment
QUALITY_RANGE = (0.0, 7.0)    # 0-based qualities drawn: about 4 to 40 kbps on speech
DEFAULT_MEL_WEIGHT = 4.0


class DecodedSpeech:
    """Decoded chunks of speech and their true coefficients (the post-filter's bins only), held in RAM."""

    def __init__(self, codec: AudioCodec, files: list[Path], rng: random.Random):
        self.codec, self.rng, self.items = codec, rng, []
        n = int(SEGMENT_SECONDS * SPEECH_RATE)
        for path in tqdm(files, desc="coding speech", unit="file", leave=False):
            x, _ = read_audio(path, SPEECH_RATE)
            x = x.mean(axis=0, keepdims=True)
            for start in range(0, x.shape[1] - MIN_SEGMENT_SECONDS * SPEECH_RATE + 1, n):
                for _ in range(PASSES):
                    self.items.append(self._pair(x[:, start:start + n], rng.uniform(*QUALITY_RANGE)))

    def _pair(self, x: np.ndarray, quality: float) -> tuple:
        codec, hop = self.codec, self.codec.hop
        _, _, blocks = encoder_input(x, SPEECH_RATE, codec.rate)
        s = np.concatenate([b for b in blocks if b is not None], axis=1)          # at the model rate
        c = codec.encode_blocks([s], SPEECH_RATE, 1, lambda: x.shape[1], quality=quality + 1, signal="speech")
        layout = codec.stream_layout(c)
        (frames, q, _, _), = layout["chunks"]
        chunk = codec.decoded_chunk({"z": c.section("z"), "y": c.section("y")}, frames, q / 1000, 0, layout)
        padded = np.pad(s, ((0, 0), (hop, (frames + 1) * hop - hop - s.shape[1])))
        with torch.no_grad():
            coefs = mdct(torch.from_numpy(padded), hop)
        k = chunk.shaped_bins
        divisor = chunk.divisor.expand_as(chunk.y_rec)
        return (chunk.y_hat[:, :k], chunk.log_scale[:, :k], chunk.y_rec[:, :k], divisor[:, :k], coefs[:, :k].float(),
                chunk.quality, chunk.exponent)

    def batch(self, n: int, frames: int) -> tuple:
        """``n`` random crops of ``frames`` frames: stacked tensors, qualities and exponents."""
        crops = []
        for item in self.rng.choices(self.items, k=n):
            start = self.rng.randrange(max(item[0].shape[3] - frames, 0) + 1)
            crops.append([t[..., start:start + frames] for t in item[:5]] + list(item[5:]))
        tensors = [torch.cat([c[i] for c in crops]) for i in range(5)]
        return (*tensors, torch.tensor([c[5] for c in crops]), [c[6] for c in crops])


def expanded(y: torch.Tensor, exponents: list[int]) -> torch.Tensor:
    """:func:`.powerlaw.expand` of each item with its own exponent."""
    return torch.cat([powerlaw.expand(y[i:i + 1], p) for i, p in enumerate(exponents)])


def speech_waveform(coefs: torch.Tensor, hop: int, rate: int) -> torch.Tensor:
    """The 16 kHz waveform (complete hops) of low-bin coefficients (B, k, 1, T) of a ``rate`` model."""
    full = torch.nn.functional.pad(coefs, (0, 0, 0, 0, 0, hop - coefs.shape[1]))
    return torchaudio.functional.resample(imdct(full, hop)[:, hop:-hop], rate, SPEECH_RATE)


def postfilter_loss(codec: AudioCodec, batch: tuple, mel_weight: float) -> tuple[torch.Tensor, float, float]:
    """Loss, MSE ratio and mel ratio (after / before the post-filter) of a batch."""
    y_hat, log_scale, y_rec, divisor, coefs, quality, exponents = batch
    gains = codec.model.postfilter(y_hat, log_scale, y_rec, quality, codec.config.levels)
    after = expanded(y_rec * gains, exponents) / divisor
    with torch.no_grad():
        before = expanded(y_rec, exponents) / divisor
        mse_before = (before - coefs).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
        ref = speech_waveform(coefs, codec.hop, codec.rate)
        mel_before = log_mel_l1(ref, speech_waveform(before, codec.hop, codec.rate), SPEECH_RATE).clamp_min(1e-6)
    mse = ((after - coefs).pow(2).mean(dim=(1, 2, 3)) / mse_before).mean()
    mel = log_mel_l1(ref, speech_waveform(after, codec.hop, codec.rate), SPEECH_RATE) / mel_before
    return mse + mel_weight * mel, mse.item(), mel.item()


def train_postfilter(args, files: list[Path]) -> int:
    """Train (or resume) a post-filter of width ``args.postfilter`` for the codec of ``args.init``."""
    from .weights import export_model, load_weights, training_model

    if not args.init:
        raise UsageError("--postfilter trains a post-filter for an existing model: give its weights with --init")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    loaded = load_weights(Path(args.init))            # its z prior's tables, digest and metadata
    model = training_model(Path(args.init), postfilter=args.postfilter)
    codec = AudioCodec("mdct", model, AudioLatentCodec(model, loaded.z_prior), loaded.digest, postfilter=False)
    ckpt, log = run_folder(Path(args.out))
    optimizer = torch.optim.Adam(model.postfilter.parameters(), lr=args.lr)
    state, step, elapsed = ckpt.load("cpu"), 0, 0.0
    if state is not None:
        model.postfilter.load_state_dict(state["postfilter"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
    frames = args.frames or 64
    if not 4 <= frames <= MAX_CROP:
        raise UsageError(f"--frames for --postfilter must be between 4 and {MAX_CROP}")
    corpus = DecodedSpeech(codec, files, rng)
    if not corpus.items:
        raise UsageError(f"no speech of at least {MIN_SEGMENT_SECONDS} s under {args.data}")
    mel_weight = DEFAULT_MEL_WEIGHT if args.mel_weight is None else args.mel_weight
    print(f"post-filter corpus: {len(files)} files, {len(corpus.items)} decoded chunks")

    def checkpoint() -> dict:
        return {"postfilter": model.postfilter.state_dict(), "optimizer": optimizer.state_dict(),
                "step": loop.step, "elapsed": loop.elapsed}

    model.postfilter.train()
    loop = TrainingLoop(args.steps, "train post-filter", checkpoint, ckpt, log, start=step, elapsed=elapsed,
                        max_minutes=args.max_minutes, stop_after_minutes=args.stop_after_minutes,
                        shown=("loss", "mse", "mel"))
    with loop:
        while not loop.over():
            lr = loop.lr(args.lr)
            set_lr(optimizer, lr)
            loss, mse, mel = postfilter_loss(codec, corpus.batch(args.batch, frames), mel_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loop.end_step(lambda: {"loss": round(loss.item(), 4), "mse": round(mse, 4), "mel": round(mel, 4), "lr": lr})
    if args.export:
        export(export_model, model.eval(), Path(args.export),
               {**loaded.extra, "postfilter_steps": loop.step, "postfilter_data": len(files)})
    return 0
