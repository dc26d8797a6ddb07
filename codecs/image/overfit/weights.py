"""The weights of a network fitted to one image, in the stream: quantised with a per-group step
chosen for the image's loss, and range coded (the overfitted and the lossless image codecs).

Each group of parameters gets a step ``2**-e``; the integers ``round(w * 2**e)`` are coded with the
zero-mean Gaussian row nearest their RMS.  The decoder's weights are those integers times the step,
exactly.  The overfitted model has four groups (the ARM's weights, its biases, the upsampling and
synthesis weights, their biases).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ...entropy import GaussianConditional, SymbolDecoder, SymbolEncoder
from .model import OverfitModel, laplace_bits

GROUPS = ("arm.weight", "arm.bias", "synthesis.weight", "synthesis.bias")
EXPONENTS = range(3, 16)
_GAUSSIAN = GaussianConditional()


def group_of(name: str) -> str | None:
    """The group of a parameter of :class:`OverfitModel` (None for the latent grids)."""
    if name.startswith("grids"):
        return None
    net = "arm" if name.startswith("arm") else "synthesis"
    return f"{net}.{'bias' if name.endswith('bias') else 'weight'}"


def overfit_groups(model: OverfitModel) -> dict[str, list[torch.nn.Parameter]]:
    """The parameters of :class:`OverfitModel` coded as weights, by group (``GROUPS`` order)."""
    return {group: [p for name, p in model.named_parameters() if group_of(name) == group] for group in GROUPS}


def _row(ints: np.ndarray) -> int:
    """The Gaussian row whose scale is nearest (in log) the RMS of ``ints``."""
    rms = max(math.sqrt(float(np.mean(ints.astype(np.float64) ** 2))), 1e-9)
    mids = np.sqrt(_GAUSSIAN.scales[:-1] * _GAUSSIAN.scales[1:])
    return int(np.searchsorted(mids, rms))


def _integers(params: list[torch.Tensor], exponent: int) -> np.ndarray:
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in params])
    return torch.round(flat * 2.0**exponent).long().numpy()


def group_bits(ints: np.ndarray) -> float:
    row = _row(ints)
    return _GAUSSIAN.tables.ideal_bits(ints, np.full(ints.shape, row)) + 6   # + the row index


def _set(params: list[torch.nn.Parameter], ints: np.ndarray, exponent: int) -> None:
    values = torch.from_numpy(ints).double() * 2.0**-exponent
    pos = 0
    for p in params:
        p.data.copy_(values[pos:pos + p.numel()].view_as(p).to(p.dtype))
        pos += p.numel()


@torch.no_grad()
def quantise(groups: dict[str, list[torch.nn.Parameter]], loss: Callable[[], float], pixels: int) -> list[int]:
    """Quantise the parameters in place, group by group, each with the exponent that minimises
    ``loss()`` (per pixel, of the model as it stands) plus the group's own bits per pixel; returns
    the exponents."""
    chosen = []
    for params in groups.values():
        original = [p.detach().clone() for p in params]
        best = None
        for e in EXPONENTS:
            ints = _integers(original, e)
            if np.abs(ints).max(initial=0) >= 1 << 20:
                break
            _set(params, ints, e)
            total = loss() + group_bits(ints) / pixels
            if best is None or total < best[0]:
                best = (total, e, ints)
        _set(params, best[2], best[1])
        chosen.append(best[1])
    return chosen


def overfit_loss(model: OverfitModel, x: torch.Tensor, lam: float) -> Callable[[], float]:
    """lambda * 255^2 * MSE + bpp of the overfitted model with rounded latents: what :func:`quantise`
    minimises for it."""
    latents = [torch.round(g) for g in model.grids]

    def loss() -> float:
        mse = float((model.synthesise(latents).clamp(0, 1) - x).square().mean())
        bits = sum(float(laplace_bits(latents[k], *model.arm_params(latents, k)).sum()) for k in range(len(latents)))
        return lam * 255**2 * mse + bits / (model.h * model.w)
    return loss


def encode(groups: dict[str, list[torch.nn.Parameter]], exponents: list[int], enc: SymbolEncoder) -> list[int]:
    """Code the quantised weights; returns the Gaussian row of each group (for the stream's fields)."""
    rows = []
    for params, e in zip(groups.values(), exponents):
        ints = _integers(params, e)
        row = _row(ints)
        enc.encode(ints, np.full(ints.shape, row), _GAUSSIAN.tables)
        rows.append(row)
    return rows


def decode(groups: dict[str, list[torch.nn.Parameter]], exponents: list[int], rows: list[int],
           dec: SymbolDecoder) -> None:
    """Set the groups' parameters from the stream."""
    for params, e, row in zip(groups.values(), exponents, rows):
        count = sum(p.numel() for p in params)
        _set(params, dec.decode(np.full(count, row), _GAUSSIAN.tables), e)


def valid(exponents: list[int], rows: list[int], count: int = len(GROUPS)) -> bool:
    """Whether a stream's weight fields (for ``count`` groups) are in range."""
    return (len(exponents) == len(rows) == count and all(e in EXPONENTS for e in exponents)
            and all(0 <= r < len(_GAUSSIAN.scales) for r in rows))
