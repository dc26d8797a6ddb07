"""The overfitted model's own weights in the stream: quantised with a per-group step chosen for
rate plus distortion, and range coded.

Four groups (the ARM's weights, its biases, the upsampling and synthesis weights, their biases)
each get a step ``2**-e``; the integers ``round(w * 2**e)`` are coded with the zero-mean Gaussian
row nearest their RMS.  The decoder's weights are those integers times the step, exactly.
"""
from __future__ import annotations

import math

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


def _params(model: OverfitModel, group: str) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if group_of(name) == group]


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
def quantise(model: OverfitModel, x: torch.Tensor, lam: float) -> list[int]:
    """Quantise ``model``'s weights in place, group by group, each with the exponent that minimises
    lambda * 255^2 * MSE + bpp (latents rounded, weights' own bits included); returns the exponents."""
    latents = [torch.round(g) for g in model.grids]
    chosen = []
    for group in GROUPS:
        params = _params(model, group)
        original = [p.detach().clone() for p in params]
        best = None
        for e in EXPONENTS:
            ints = _integers(original, e)
            if np.abs(ints).max(initial=0) >= 1 << 20:
                break
            _set(params, ints, e)
            loss = _loss(model, x, latents, lam) + group_bits(ints) / (model.h * model.w)
            if best is None or loss < best[0]:
                best = (loss, e, ints)
        _set(params, best[2], best[1])
        chosen.append(best[1])
    return chosen


def _loss(model: OverfitModel, x: torch.Tensor, latents: list[torch.Tensor], lam: float) -> float:
    mse = float((model.synthesise(latents).clamp(0, 1) - x).square().mean())
    bits = sum(float(laplace_bits(latents[k], *model.arm_params(latents, k)).sum()) for k in range(len(latents)))
    return lam * 255**2 * mse + bits / (model.h * model.w)


def encode(model: OverfitModel, exponents: list[int], enc: SymbolEncoder) -> list[int]:
    """Code the quantised weights; returns the Gaussian row of each group (for the stream's fields)."""
    rows = []
    for group, e in zip(GROUPS, exponents):
        ints = _integers(_params(model, group), e)
        row = _row(ints)
        enc.encode(ints, np.full(ints.shape, row), _GAUSSIAN.tables)
        rows.append(row)
    return rows


def decode(model: OverfitModel, exponents: list[int], rows: list[int], dec: SymbolDecoder) -> None:
    """Set ``model``'s weights from the stream."""
    for group, e, row in zip(GROUPS, exponents, rows):
        params = _params(model, group)
        count = sum(p.numel() for p in params)
        _set(params, dec.decode(np.full(count, row), _GAUSSIAN.tables), e)


def valid(exponents: list[int], rows: list[int]) -> bool:
    """Whether a stream's weight fields are in range."""
    return (len(exponents) == len(rows) == len(GROUPS) and all(e in EXPONENTS for e in exponents)
            and all(0 <= r < len(_GAUSSIAN.scales) for r in rows))
