"""Learning on compressed audio: spoken-digit classification on WaLLoC latents against the same
classifier on waveforms and on log-mel spectrograms of equal size (``python -m ncodec.eval.fsdd DIR``).

DIR holds the Free Spoken Digit Dataset (``{digit}_{speaker}_{index}.flac`` at 8 kHz); recordings with
index 0-4 are its test split, the rest train.  Every input has 16 channels at 250 frames a second (4,000
numbers a second of audio, half the 8 kHz samples), padded or cut to ``FRAMES`` frames:

* ``walloc``: the audio WaLLoC encoder's quantised latent (:func:`ncodec.walloc.latents`: 16 kHz wavelet
  packets and one linear layer), at one quality; the bytes are those of its ``.ncz`` stream;
* ``waveform``: the signal resampled to 4 kHz, cut into frames of 16 samples (one per channel);
* ``log-mel``: a 16-band log-mel spectrogram with a 4 ms hop.

One small 1-D convolutional network (the same layers for each, but its first layer's input
channels) learns each input from the training split with the same schedule and seeds; the report
gives test accuracy (mean and spread over seeds), the classifier's multiply-accumulates per example,
the input's cost per second of audio and its bytes (stream or FLAC).  Writes ``fsdd.json`` and
``fsdd.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..fileio import write_text

RATE = 8000
FRAMES = 256                  # about 1 s at 250 frames a second (FSDD clips are 0.1-2.3 s)
CHANNELS = 16
TEST_INDEXES = range(5)       # the dataset's convention: recordings 0-4 of each speaker and digit
INPUTS = ("walloc", "waveform", "log-mel")


def dataset(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The recordings, their digits and whether each is in the test split."""
    files = sorted(Path(folder).glob("*_*_*.flac"))
    if not files:
        raise SystemExit(f"error: no FSDD recordings (digit_speaker_index.flac) in {folder}")
    parts = [f.stem.split("_") for f in files]
    return files, np.array([int(p[0]) for p in parts]), np.array([int(p[2]) in TEST_INDEXES for p in parts])


def fit_frames(x: torch.Tensor) -> torch.Tensor:
    """(C, T) -> (C, FRAMES): zero-padded or cut at the end."""
    return nn.functional.pad(x, (0, FRAMES - x.shape[1])) if x.shape[1] < FRAMES else x[:, :FRAMES]


def waveform_features(x: np.ndarray) -> torch.Tensor:
    import torchaudio

    y = torchaudio.functional.resample(torch.from_numpy(x[0]), RATE, 4000)
    y = nn.functional.pad(y, (0, (-len(y)) % CHANNELS))
    return y.view(-1, CHANNELS).T


def mel_features(x: np.ndarray) -> torch.Tensor:
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(RATE, n_fft=256, hop_length=RATE // 250, n_mels=CHANNELS)
    return torch.log(mel(torch.from_numpy(x[0])) + 1e-6)


def features(files: list[Path], quality: int, weights: str | None) -> tuple[dict, dict]:
    """Every input of every recording (name -> (N, 16, FRAMES)) and the bytes and seconds spent."""
    import ncodec
    import ncodec.walloc as walloc
    from ncodec.audio.io import read_audio
    from tqdm import tqdm

    codec = ncodec.load_codec("walloc", "cpu", modality="audio", **({"weights": weights} if weights else {}))
    out = {name: [] for name in INPUTS}
    cost = {"walloc_seconds": 0.0, "log-mel_seconds": 0.0, "walloc_bytes": 0, "flac_bytes": 0, "audio_seconds": 0.0}
    for f in tqdm(files, desc="features", unit="file"):
        x, rate = read_audio(f)
        if rate != RATE:
            raise SystemExit(f"error: {f} is at {rate} Hz, not {RATE}")
        t0 = time.perf_counter()
        out["walloc"].append(fit_frames(walloc.latents(x, RATE, quality=quality, weights=weights)[0]))
        t1 = time.perf_counter()
        out["log-mel"].append(fit_frames(mel_features(x)))
        t2 = time.perf_counter()
        out["waveform"].append(fit_frames(waveform_features(x)))
        cost["walloc_seconds"] += t1 - t0
        cost["log-mel_seconds"] += t2 - t1
        cost["walloc_bytes"] += len(codec.encode(x, RATE, quality=quality))
        cost["flac_bytes"] += f.stat().st_size
        cost["audio_seconds"] += x.shape[1] / RATE
    return {k: torch.stack(v) for k, v in out.items()}, cost


def classifier(channels: int) -> nn.Sequential:
    """The same network for every input: three 1-D convolutions, global pooling, a linear layer."""
    return nn.Sequential(
        nn.Conv1d(channels, 64, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(64, 64, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(128, 10))


def classifier_macs(channels: int) -> int:
    """Multiply-accumulates of one example through :func:`classifier`."""
    t = FRAMES
    return channels * 64 * 5 * t + 64 * 64 * 5 * (t // 2) + 64 * 128 * 3 * (t // 4) + 128 * 10


def train_and_test(x: torch.Tensor, labels: np.ndarray, test: np.ndarray, seed: int, epochs: int) -> float:
    """Test accuracy of :func:`classifier` trained on the training split (inputs standardised per
    channel with the training split's statistics)."""
    torch.manual_seed(seed)
    y = torch.from_numpy(labels)
    train = torch.from_numpy(~test)
    mean = x[train].mean(dim=(0, 2), keepdim=True)
    std = x[train].std(dim=(0, 2), keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    net = classifier(x.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-2)
    idx = torch.nonzero(train)[:, 0]
    steps = epochs * -(-len(idx) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        for batch in idx[torch.randperm(len(idx))].split(64):
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = net(x[~train]).argmax(1)
    return float((pred == y[~train]).float().mean())


def report(results: dict) -> str:
    c = results["cost"]
    seconds = c["audio_seconds"]
    lines = [f"FSDD test split: {results['test']} recordings ({results['train']} train); seeds: {len(results['seeds'])}, "
             f"epochs: {results['epochs']}, WaLLoC quality: {results['quality']}", "",
             "| input | numbers per second | test accuracy | classifier MACs | input bytes per second |",
             "|---|---|---|---|---|"]
    per_second = {"walloc": c["walloc_bytes"] / seconds, "waveform": c["flac_bytes"] / seconds,
                  "log-mel": c["flac_bytes"] / seconds}
    for name, r in results["inputs"].items():
        source = "stream" if name == "walloc" else "FLAC"
        lines.append(f"| {name} | 4000 | {r['mean']:.4f} ± {r['std']:.4f} | {r['macs'] / 1e6:.2f} M | "
                     f"{per_second[name]:.0f} ({source}) |")
    lines += ["", f"WaLLoC encoder (resampling to 16 kHz included): {c['walloc_seconds'] / seconds * 1000:.1f} ms per "
              f"second of audio; log-mel: {c['log-mel_seconds'] / seconds * 1000:.1f} ms (CPU threads: {results['threads']})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ncodec.eval.fsdd", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="the Free Spoken Digit Dataset's recordings")
    p.add_argument("--quality", type=int, default=6, help="WaLLoC quality of the latents (1-6)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--weights", default=None, help="audio WaLLoC weights (default: the shipped ones)")
    p.add_argument("--out", default="results/fsdd")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    files, labels, test = dataset(Path(a.folder))
    feats, cost = features(files, a.quality, a.weights)
    results = {"quality": a.quality, "epochs": a.epochs, "threads": torch.get_num_threads(),
               "seeds": list(range(a.seeds)), "test": int(test.sum()),
               "train": int((~test).sum()), "cost": cost, "inputs": {}}
    for name, x in feats.items():
        acc = [train_and_test(x, labels, test, seed, a.epochs) for seed in range(a.seeds)]
        results["inputs"][name] = {"accuracy": acc, "mean": float(np.mean(acc)), "std": float(np.std(acc)),
                                   "macs": classifier_macs(x.shape[1])}
        print(f"{name}: {np.mean(acc):.4f}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "fsdd.json", json.dumps(results, indent=1), force=True)
    write_text(out / "fsdd.md", report(results), force=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
