"""Fitting the lossless model to one image: presets, the training samples, progress.

Every plane's network is trained at once on random batches of that plane's values, minimising their
code length under the model, with SOAP (heavyball's) and a cosine learning-rate decay.  The samples
are the integer features the coder will use (at most ``MAX_SAMPLES`` values a plane, drawn at random
on large images), so what training minimises is what the coder pays, up to the fixed-point rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...training import TrainingLoop, set_lr
from ..overfit.fit import soap, soap_step
from .context import PlaneOrder, features
from .model import LosslessModel, logistic_bits, scaled

MAX_SAMPLES = 1 << 20
BLOCK = 1 << 16          # values whose features are computed at once (bounded memory on large images)


@dataclass(frozen=True)
class Preset:
    """How long a fit runs: steps, values per plane in each step's batch, peak learning rate."""

    steps: int
    batch: int
    lr: float = 1e-2


PRESETS = {     # a 768x512 photo on 2 CPU cores: about 20 s, 1 minute and 4 minutes (docs/results/image.md)
    "fast": Preset(steps=400, batch=1 << 14),
    "medium": Preset(steps=1000, batch=1 << 15),
    "slow": Preset(steps=3000, batch=1 << 16),
}
DEFAULT_PRESET = "fast"


def hidden_width(pixels: int) -> int:
    """The networks' hidden width for an image of ``pixels``: narrower on small images, whose
    streams would otherwise be dominated by the weights (a 128x128 photo: 4 % smaller at 8 than at 24)."""
    return 8 if pixels < 1 << 16 else 16 if pixels < 1 << 18 else 24


def plane_features(buffer: np.ndarray, order: PlaneOrder, plane: int, positions: np.ndarray):
    """Integer features and predictions of the values at flat ``positions`` of ``plane``, computed
    from ``buffer`` (all planes, then the zero outside entry), block by block."""
    feats, preds = [], []
    for s in range(0, len(positions), BLOCK):
        index, inside = order.gather(positions[s:s + BLOCK], plane)
        f, p = features(buffer[index], inside, plane)
        feats.append(f)
        preds.append(p)
    return np.concatenate(feats), np.concatenate(preds)


class Samples:
    """The training values of one plane: their features (scaled), predictions and targets."""

    def __init__(self, buffer: np.ndarray, order: PlaneOrder, plane: int, rng: np.random.Generator):
        n = order.h * order.w
        positions = plane * n + (np.sort(rng.choice(n, MAX_SAMPLES, replace=False)) if n > MAX_SAMPLES
                                 else np.arange(n))
        f, p = plane_features(buffer, order, plane, positions)
        self.features = scaled(torch.from_numpy(f))
        self.prediction = torch.from_numpy(p).float()
        self.target = torch.from_numpy(buffer[positions]).float()

    def bits(self, net, index: torch.Tensor | None = None) -> torch.Tensor:
        """Code lengths (bits) of the samples at ``index`` (all when None) under ``net``."""
        pick = (lambda t: t) if index is None else (lambda t: t[index])
        mean, log_scale = net(pick(self.features))
        return logistic_bits(pick(self.target), pick(self.prediction) + mean, log_scale)


def fit(buffer: np.ndarray, order: PlaneOrder, preset: Preset, seed: int = 0,
        progress: bool = True) -> tuple[LosslessModel, list[Samples]]:
    """A model of the planes in ``buffer`` (flat, see :class:`PlaneOrder`) and the samples it was
    trained on (for choosing its weights' quantisation)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    samples = [Samples(buffer, order, c, rng) for c in range(order.planes)]
    model = LosslessModel(order.planes, hidden_width(order.h * order.w))
    optimizer = soap(list(model.parameters()), preset.lr)
    generator = torch.Generator().manual_seed(seed)
    with TrainingLoop(preset.steps, "fit lossless", shown=("bits",), show=progress) as loop:
        while not loop.over():
            set_lr(optimizer, preset.lr * 0.5 * (1 + math.cos(math.pi * loop.step / preset.steps)))
            loss = sum(s.bits(net, torch.randint(len(s.target), (min(preset.batch, len(s.target)),),
                                                 generator=generator)).mean()
                       for s, net in zip(samples, model.nets)) / order.planes
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            soap_step(optimizer)
            loop.end_step(lambda: {"bits": round(loss.item(), 4)})
    return model, samples


@torch.no_grad()
def mean_bits(model: LosslessModel, samples: list[Samples]) -> float:
    """Mean code length (bits per value) of every plane's samples under the float model."""
    return sum(float(s.bits(net).sum()) for s, net in zip(samples, model.nets)) / sum(len(s.target) for s in samples)
