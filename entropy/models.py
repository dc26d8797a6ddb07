"""Entropy models as the coder sees them: per-channel factorized priors and
Gaussian scale conditionals, both reduced to :class:`TableSet` rows plus the rule that
maps each latent element to its row.

These classes hold no trainable parameters; they are built from trained CompressAI
modules (``EntropyBottleneck``) or from a scale grid, and their tables are stored with
the model weights so that every machine codes with the very same numbers.
"""
from __future__ import annotations

import numpy as np
import torch

from .coder import SymbolDecoder, SymbolEncoder
from .fixedpoint import ACT_FRAC
from .tables import (SCALE_MIN, TAIL_MASS, TableSet, gaussian_scale_table, gaussian_tables, scale_thresholds,
                     stack_rows)

MAX_FACTORIZED_SUPPORT = 4096


class FactorizedPrior:
    """One learned density per channel; symbols are ``round(x - median)``.

    Medians live on the fixed-point grid (multiples of 2**-ACT_FRAC) so that the
    dequantized value ``symbol + median`` is exact in fixed point and in float32.
    """

    def __init__(self, tables: TableSet, medians_fixed: np.ndarray):
        self.tables = tables
        self.medians_fixed = np.asarray(medians_fixed, dtype=np.int64)

    @classmethod
    @torch.no_grad()
    def from_bottleneck(cls, bottleneck, tail_mass: float = 1e-9) -> "FactorizedPrior":
        """Tabulate a trained CompressAI ``EntropyBottleneck``.

        The support of each channel is found from the learned density itself (where its
        cumulative leaves ``tail_mass / 2`` on either side), not from the bottleneck's
        auxiliary quantiles, which converge slowly in training."""
        q = bottleneck.quantiles.detach().double()[:, 0, :]
        medians_fixed = torch.round(q[:, 1] * (1 << ACT_FRAC)).long()
        medians = medians_fixed.double() / (1 << ACT_FRAC)
        half = MAX_FACTORIZED_SUPPORT // 2
        k = torch.arange(-half, half + 1, dtype=torch.float64)
        edges = (medians[:, None] + k[None, :] + 0.5).float().unsqueeze(1).to(bottleneck.quantiles.device)
        cdf = torch.sigmoid(bottleneck._logits_cumulative(edges, stop_gradient=True))[:, 0].double().cpu()
        lo = (cdf < tail_mass / 2).sum(dim=1) - half      # first k whose upper edge holds mass
        hi = (half - (cdf > 1 - tail_mass / 2).sum(dim=1) + 1).clamp(max=half)
        width = int((hi - lo).max()) + 1
        kk = lo[:, None] + torch.arange(width)[None, :]
        values = (kk.double() + medians[:, None]).float().unsqueeze(1).to(bottleneck.quantiles.device)
        lik = bottleneck._likelihood(values)[0][:, 0].double().cpu().numpy()
        rows = []
        for c in range(q.shape[0]):
            p = lik[c, : int(hi[c] - lo[c]) + 1]
            rows.append(np.append(p, max(1.0 - p.sum(), tail_mass)))
        return cls(stack_rows(rows, lo.tolist()), medians_fixed.numpy())

    def channel_index(self, shape: tuple) -> np.ndarray:
        """Row index of every element of an (N, C, H, W) latent."""
        n, c, h, w = shape
        return np.broadcast_to(np.arange(c).reshape(1, c, 1, 1), (n, c, h, w))

    def quantize(self, x: torch.Tensor) -> np.ndarray:
        """Encoder side: latent -> integer symbols."""
        med = torch.from_numpy(self.medians_fixed).to(x.device).double().view(1, -1, 1, 1) / (1 << ACT_FRAC)
        return torch.round(x.double() - med).long().cpu().numpy()

    def dequantize_fixed(self, symbols: np.ndarray) -> torch.Tensor:
        """Symbols -> latent in fixed point (float64 integers, Q ACT_FRAC)."""
        s = torch.from_numpy(np.asarray(symbols, dtype=np.int64))
        med = torch.from_numpy(self.medians_fixed).view(1, -1, 1, 1)
        return (s * (1 << ACT_FRAC) + med).double()

    def encode(self, enc: SymbolEncoder, symbols: np.ndarray) -> float:
        """Code ``symbols``; returns their ideal bit count under these tables."""
        enc.encode(symbols, self.channel_index(symbols.shape), self.tables)
        return self.ideal_bits(symbols)

    def decode(self, dec: SymbolDecoder, shape: tuple) -> np.ndarray:
        return dec.decode(self.channel_index(shape), self.tables)

    def ideal_bits(self, symbols: np.ndarray) -> float:
        return self.tables.ideal_bits(symbols, self.channel_index(symbols.shape))


class GaussianConditional:
    """Zero-mean discretised Gaussians on a geometric scale grid of ``levels`` scales from
    :data:`~ncodec.entropy.tables.SCALE_MIN` to ``smax``; symbols are ``round(y - mean)``.
    Each row covers the values up to the quantile that leaves ``tail_mass`` outside it (the rest
    are escaped, see :mod:`~ncodec.entropy.coder`).

    The row for each element is chosen from a fixed-point scale by integer thresholds,
    so encoder and decoder agree exactly whenever their fixed-point scales agree.
    """

    def __init__(self, levels: int = 64, smax: float = 256.0, tail_mass: float = TAIL_MASS):
        self.scales = gaussian_scale_table(levels, SCALE_MIN, smax)
        self.tables = gaussian_tables(self.scales, tail_mass)
        self.thresholds = torch.from_numpy(self._thresholds()).double()

    def _thresholds(self) -> np.ndarray:
        """Fixed-point decision thresholds between neighbouring rows."""
        return scale_thresholds(self.scales, ACT_FRAC)

    def index(self, scales_fixed: torch.Tensor) -> np.ndarray:
        """Fixed-point scales (float64 integers) -> row indices."""
        return torch.searchsorted(self.thresholds, scales_fixed.cpu().contiguous(), right=True).numpy()

    def encode(self, enc: SymbolEncoder, symbols: np.ndarray, scales_fixed: torch.Tensor) -> float:
        """Code ``symbols`` with the rows their scales pick; returns their ideal bit count."""
        index = self.index(scales_fixed)
        enc.encode(symbols, index, self.tables)
        return self.tables.ideal_bits(symbols, index)

    def decode(self, dec: SymbolDecoder, scales_fixed: torch.Tensor) -> np.ndarray:
        return dec.decode(self.index(scales_fixed), self.tables)


class LogScaleGaussian(GaussianConditional):
    """A :class:`GaussianConditional` whose rows are chosen by a fixed-point *natural-log* scale
    (thresholds at the midpoints of the log grid)."""

    def _thresholds(self) -> np.ndarray:
        log = np.log(self.scales)
        return np.ceil(0.5 * (log[:-1] + log[1:]) * 2**ACT_FRAC)
