"""Discrete probability tables that the range coder uses.

A :class:`TableSet` is a family of categorical distributions over integers.  Row ``i``
covers the symbols ``offset[i] .. offset[i] + length[i] - 1`` and ends with one extra
*escape* entry that stands for every value outside that range (escaped values are then
coded exactly by :mod:`ncodec.entropy.coder`).  Every probability is rounded to a
multiple of 2**-40 so that tables computed on different machines (whose ``erf`` or
``exp`` may differ in the last bit) are identical; :meth:`TableSet.digest` lets a
decoder verify that it holds the encoder's tables.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

PROB_GRID = 2.0**40
TAIL_MASS = 1e-9
SCALE_MIN = 0.11          # the smallest scale of a Gaussian grid (finer scales code like it)
IDEAL_BITS_CHUNK = 1 << 20


def _snap(p: np.ndarray) -> np.ndarray:
    """Round probabilities to the platform-independent grid (never to exactly zero)."""
    return np.maximum(np.round(p * PROB_GRID), 1.0) / PROB_GRID


@dataclass(frozen=True)
class TableSet:
    """Rows of probabilities (last used entry of each row = escape), with offsets and lengths."""

    pmfs: np.ndarray      # float64 (n_tables, max_length + 1), zero padded after each row's escape entry
    offsets: np.ndarray   # int64 (n_tables,): the symbol value of column 0
    lengths: np.ndarray   # int64 (n_tables,): in-range symbols per row (escape sits at column `length`)

    def __post_init__(self):
        if self.pmfs.ndim != 2 or len(self.offsets) != len(self.pmfs) or len(self.lengths) != len(self.pmfs):
            raise ValueError("malformed table set")

    @property
    def count(self) -> int:
        return len(self.pmfs)

    def row(self, i: int) -> np.ndarray:
        """Probabilities of row i including its escape entry."""
        return self.pmfs[i, : self.lengths[i] + 1]

    def digest(self) -> bytes:
        """8-byte digest of the exact table contents."""
        h = hashlib.sha256()
        for arr in (self.pmfs, self.offsets, self.lengths):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.digest()[:8]

    def ideal_bits(self, symbols: np.ndarray, table_index: np.ndarray) -> float:
        """-sum log2 P(symbol) under these (normalised) tables; escapes count their escape entry only."""
        symbols, table_index = np.ravel(symbols), np.ravel(table_index)
        log_norm = np.log2(self.pmfs.sum(axis=1))
        bits = 0.0
        for start in range(0, len(symbols), IDEAL_BITS_CHUNK):     # bounded temporaries on huge latents
            idx = table_index[start:start + IDEAL_BITS_CHUNK].astype(np.int64)
            rel = symbols[start:start + IDEAL_BITS_CHUNK].astype(np.int64) - self.offsets[idx]
            lengths = self.lengths[idx]
            col = np.where((rel < 0) | (rel >= lengths), lengths, rel)
            bits += float((log_norm[idx] - np.log2(self.pmfs[idx, col])).sum())
        return bits


def stack_rows(rows: list[np.ndarray], offsets: list[int]) -> TableSet:
    """Build a TableSet from per-row probability vectors (escape entry last in each)."""
    width = max(len(r) for r in rows)
    pmfs = np.zeros((len(rows), width), dtype=np.float64)
    for i, r in enumerate(rows):
        pmfs[i, : len(r)] = _snap(np.asarray(r, dtype=np.float64))
    lengths = np.array([len(r) - 1 for r in rows], dtype=np.int64)
    return TableSet(pmfs, np.asarray(offsets, dtype=np.int64), lengths)


def geometric_delta_table(span: int, decay: float) -> TableSet:
    """One row over the integers ``-span .. span`` with P(d) proportional to ``decay ** |d|``: a
    fixed model for side information coded as differences from the previous value."""
    d = np.arange(-span, span + 1)
    p = decay ** np.abs(d).astype(np.float64)
    return stack_rows([np.append(p / p.sum(), TAIL_MASS)], [-span])


def gaussian_scale_table(levels: int = 64, smin: float = SCALE_MIN, smax: float = 256.0) -> np.ndarray:
    """Geometric grid of Gaussian scales, snapped to multiples of 2**-16."""
    scales = np.exp(np.linspace(math.log(smin), math.log(smax), levels))
    return np.round(scales * 2**16) / 2**16


def gaussian_tables(scales: np.ndarray, tail_mass: float = TAIL_MASS) -> TableSet:
    """Zero-mean discretised Gaussians, one row per scale, support +-ceil(tail quantile)."""
    rows, offsets = [], []
    z_tail = -float(ndtri(tail_mass / 2))
    for s in scales:
        r = int(math.ceil(z_tail * s))
        k = np.arange(-r, r + 1, dtype=np.float64)
        p = ndtr((k + 0.5) / s) - ndtr((k - 0.5) / s)
        escape = 2.0 * ndtr((-r - 0.5) / s)
        rows.append(np.append(p, escape))
        offsets.append(-r)
    return stack_rows(rows, offsets)


def scale_thresholds(scales: np.ndarray, frac_bits: int) -> np.ndarray:
    """Integer decision thresholds (fixed point Q``frac_bits``) between neighbouring scales.

    A fixed-point scale ``s`` selects row ``searchsorted(thresholds, s, 'right')``: the
    geometric midpoints make the choice nearest in log scale, and integers make it exact.
    """
    mids = np.sqrt(scales[:-1] * scales[1:])
    return np.ceil(mids * 2**frac_bits).astype(np.int64)


def laplace_tables(scales: np.ndarray, mean_bins: int, tail_mass: float = TAIL_MASS) -> TableSet:
    """Discretised Laplace distributions with a mean inside [0, 1): row ``j * mean_bins + f`` has scale
    ``scales[j]`` and mean ``(f + 0.5) / mean_bins``; support +-the tail quantile around it."""
    return _located_tables(scales, mean_bins, tail_mass, _laplace_cdf)


def logistic_tables(scales: np.ndarray, mean_bins: int, tail_mass: float = TAIL_MASS) -> TableSet:
    """Discretised logistic distributions, laid out like :func:`laplace_tables`."""
    return _located_tables(scales, mean_bins, tail_mass, _logistic_cdf)


def _located_tables(scales: np.ndarray, mean_bins: int, tail_mass: float, cdf) -> TableSet:
    """Rows of ``cdf(v, scale)`` discretised to unit bins, scale-major, mean bin minor (see
    :func:`laplace_tables`); the support reaches the tail quantile of a Laplace of the same scale,
    which covers the logistic's (its tails are lighter)."""
    rows, offsets = [], []
    for b in scales:
        r = int(math.ceil(b * math.log(1 / tail_mass))) + 1
        k = np.arange(-r, r + 1, dtype=np.float64)
        for f in range(mean_bins):
            d = k - (f + 0.5) / mean_bins
            upper, lower = cdf(d + 0.5, b), cdf(d - 0.5, b)
            p = upper - lower
            rows.append(np.append(p, max(lower[0] + 1.0 - upper[-1], tail_mass)))
            offsets.append(-r)
    return stack_rows(rows, offsets)


def _laplace_cdf(v: np.ndarray, scale: float) -> np.ndarray:
    return np.where(v < 0, 0.5 * np.exp(np.minimum(v, 0) / scale), 1 - 0.5 * np.exp(-np.maximum(v, 0) / scale))


def _logistic_cdf(v: np.ndarray, scale: float) -> np.ndarray:
    return 0.5 * (1 + np.tanh(v / (2 * scale)))
