"""Exact coding of the latent grids with the auto-regressive model (ARM).

Every number that reaches the range coder comes from :class:`~ncodec.entropy.FixedPointMLP`, the
ARM evaluated in integers, so a stream decodes bit-exactly on any machine.  Decoding is sequential
by nature; it runs in *wavefronts*: value (y, x) of grid k is decoded at step
``3 * (levels - 1 - k) + x + 2 * y``, after every causal neighbour (which satisfy dx + 2 dy < 0)
and after its coarse neighbours in grid k + 1 (whose steps are at least one smaller).  All the
values of one step, in every grid, are decoded with one batched ARM evaluation and one range-coder
call per table width: about ``width + 2 * height`` steps for the whole image (1,800 for 768x512).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...entropy import ACT_FRAC, FixedPointMLP, SymbolDecoder, SymbolEncoder
from ...entropy.tables import TableSet, laplace_tables
from .model import CAUSAL, COARSE, LOG_SCALE_MAX, LOG_SCALE_MIN

SCALE_LEVELS = 64
MEAN_BIN_BITS = 4
MEAN_BINS = 1 << MEAN_BIN_BITS
TAIL_MASS = 1e-6
LEVEL_LAG = 3              # steps between a grid's wavefront and the next finer one's
ONE = 1 << ACT_FRAC
BLOCK = 1 << 16            # values whose contexts are gathered at once (bounded memory on large images)


def located_tables(log_scale_min: float, log_scale_max: float, family) -> tuple[TableSet, np.ndarray]:
    """Tables of ``family`` (:func:`~ncodec.entropy.tables.laplace_tables` or its like) for
    ``SCALE_LEVELS`` scales spaced evenly in log between the bounds (rows: scale-major, mean bin
    minor), and the fixed-point log-scale thresholds that choose a row's scale."""
    log_scales = np.linspace(log_scale_min, log_scale_max, SCALE_LEVELS)
    scales = np.round(np.exp(log_scales) * 2**16) / 2**16
    log_mid = 0.5 * (np.log(scales[:-1]) + np.log(scales[1:]))
    return family(scales, MEAN_BINS, TAIL_MASS), np.ceil(log_mid * ONE)


@lru_cache(maxsize=1)
def latent_tables() -> tuple[TableSet, np.ndarray]:
    """The Laplace tables of the latents and their thresholds (see :func:`located_tables`)."""
    return located_tables(LOG_SCALE_MIN, LOG_SCALE_MAX, laplace_tables)


def located_rows(mean: np.ndarray, log_scale: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (Q ``ACT_FRAC``) means and log-scales -> each value's row of a located table set
    (scale-major, ``MEAN_BINS`` mean bins minor) and its integer shift (the floor of its mean)."""
    fine = np.floor(mean * (MEAN_BINS / ONE)).astype(np.int64)     # the mean in 1/MEAN_BINS units, floored
    scale = np.searchsorted(thresholds, log_scale, side="right")
    return scale * MEAN_BINS + (fine & (MEAN_BINS - 1)), fine >> MEAN_BIN_BITS


class Wavefront:
    """The decoding order of the grids of given shapes, and the contexts of any of their values:
    indices into the flat buffer of all grids (finest first) whose extra last entry is a zero.
    Contexts are computed for the values asked for, so memory stays bounded by the batch."""

    def __init__(self, shapes: list[tuple[int, int]]):
        self.shapes = shapes
        self.starts = np.concatenate([[0], np.cumsum([h * w for h, w in shapes])]).astype(np.int64)
        self.size = int(self.starts[-1])
        self._heights = np.array([h for h, _ in shapes] + [0], dtype=np.int64)   # a last, empty grid:
        self._widths = np.array([w for _, w in shapes] + [0], dtype=np.int64)    # the coarsest has no coarse context
        step = np.empty(self.size, dtype=np.int32)
        for k, (h, w) in enumerate(shapes):
            y, x = np.divmod(np.arange(h * w, dtype=np.int32), np.int32(w))
            step[self.starts[k]:self.starts[k + 1]] = LEVEL_LAG * (len(shapes) - 1 - k) + x + 2 * y
        self.order = np.argsort(step, kind="stable")          # by step, then grid (finest first), then raster
        self.bounds = np.flatnonzero(np.diff(step[self.order])) + 1

    def context(self, positions: np.ndarray) -> np.ndarray:
        """(n, context) buffer indices of the contexts of the values at flat ``positions``."""
        k = np.searchsorted(self.starts, positions, side="right") - 1
        w = self._widths[k]
        y, x = np.divmod(positions - self.starts[k], w)
        out = np.empty((len(CAUSAL) + len(COARSE), len(positions)), dtype=np.int64)   # filled a row at a time
        rows = {dy: (y >= -dy if dy else None, positions + dy * w) for dy in {dy for dy, _ in CAUSAL}}
        cols = {dx: (x >= -dx if dx < 0 else x < w - dx) if dx else None for dx in {dx for _, dx in CAUSAL}}
        for col, (dy, dx) in enumerate(CAUSAL):
            below_top, shifted = rows[dy]
            np.add(shifted, dx, out=out[col])
            inside = below_top if cols[dx] is None else cols[dx] if below_top is None else below_top & cols[dx]
            if inside is not None:
                out[col][~inside] = self.size
        ch, cw, base = self._heights[k + 1], self._widths[k + 1], self.starts[np.minimum(k + 1, len(self.shapes))]
        y, x = y >> 1, x >> 1
        for col, (dy, dx) in enumerate(COARSE, start=len(CAUSAL)):
            yy, xx = y + dy, x + dx
            inside = (yy >= 0) & (yy < ch) & (xx >= 0) & (xx < cw)
            out[col] = np.where(inside, base + yy * cw + xx, self.size)
        return out.T

    def batches(self):
        """Flat indices of the values decoded together, step by step."""
        return np.split(self.order, self.bounds)

    def spans(self, block: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """Consecutive steps grouped into blocks of about ``block`` values: (start, end, the steps'
        (start, end)) in :attr:`order`."""
        edges = np.concatenate([[0], self.bounds, [self.size]]).tolist()
        blocks, current = [], []
        for a, b in zip(edges[:-1], edges[1:]):
            if current and b - current[0][0] > block:
                blocks.append((current[0][0], current[-1][1], current))
                current = []
            current.append((a, b))
        if current:
            blocks.append((current[0][0], current[-1][1], current))
        return blocks


class LatentCoder:
    """Codes integer latent grids with a trained ARM (an ``nn.Sequential`` of 1x1 convolutions)."""

    def __init__(self, arm, shapes: list[tuple[int, int]]):
        self.mlp = FixedPointMLP(arm)
        self.wavefront = Wavefront(shapes)
        self.tables, self.thresholds = latent_tables()

    def _rows(self, context_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-point context values -> each value's table row and integer shift (floor of its mean)."""
        out = self.mlp(context_values)
        return located_rows(out[:, 0], out[:, 1], self.thresholds)

    def _flat(self, grids: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(g, dtype=np.int64).ravel() for g in grids] + [np.zeros(1, np.int64)])

    def rows(self, grids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every value (flat, finest grid first), its row and its shift, given all the grids."""
        values = self._flat(grids)
        fixed = values.astype(np.float64) * ONE
        rows, shifts = np.empty(self.wavefront.size, np.int64), np.empty(self.wavefront.size, np.int64)
        for s in range(0, self.wavefront.size, BLOCK):
            positions = np.arange(s, min(s + BLOCK, self.wavefront.size))
            rows[positions], shifts[positions] = self._rows(fixed[self.wavefront.context(positions)])
        return values[:-1], rows, shifts

    def bits(self, grids: list[np.ndarray]) -> float:
        """The ideal code length of the grids in bits (what :meth:`encode` spends, within a few bytes)."""
        values, rows, shifts = self.rows(grids)
        return self.tables.ideal_bits(values - shifts, rows)

    def encode(self, grids: list[np.ndarray], enc: SymbolEncoder) -> None:
        values, rows, shifts = self.rows(grids)
        symbols = values - shifts
        for batch in self.wavefront.batches():
            enc.encode_rows(symbols[batch], rows[batch], self.tables)

    def decode(self, dec: SymbolDecoder) -> list[np.ndarray]:
        fixed = np.zeros(self.wavefront.size + 1, dtype=np.float64)
        order = self.wavefront.order
        for start, end, steps in self.wavefront.spans(BLOCK):
            context = self.wavefront.context(order[start:end])       # the block's contexts, in decoding order
            for a, b in steps:
                rows, shifts = self._rows(fixed[context[a - start:b - start]])
                fixed[order[a:b]] = (dec.decode_rows(rows, self.tables) + shifts) * float(ONE)
        values = (fixed[:-1] / ONE).astype(np.int64)
        starts = self.wavefront.starts
        return [values[starts[k]:starts[k + 1]].reshape(h, w) for k, (h, w) in enumerate(self.wavefront.shapes)]
