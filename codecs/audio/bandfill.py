"""Band-energy noise fill: side information that tells the decoder how loud the coefficients
coded as zero should be.

The scale-derived fill (:func:`.model.zero_bin_fill`) infers the energy of a zero-coded
coefficient from its coded scale, which puts noise into bands the input barely has and
leaves others too quiet.  Here the encoder *measures* it instead: per channel, band
(:data:`BAND_EDGES`, 13 bands) and 40 ms tile (:func:`tile_frames`) it takes the energy of the true
gain-domain coefficients whose symbol is 0, divides it by the zero-bin variance their coded
scales predict, and codes the level ``k = round(log4(FILL_TARGET x ratio))`` (6 dB steps,
clipped to ``K_MIN .. K_MAX``); the decoder then fills those zeros with the fraction
``4 ** k`` of the predicted variance.  Only cells holding at least one zero carry a level (the
decoder finds them from the symbols it has already decoded); each level is coded as its
difference from the same band's previous coded level with one fixed two-sided geometric
table, after the chunk's ``y`` symbols in the same range-coded section.
"""
from __future__ import annotations

import numpy as np
import torch

from ..entropy import SymbolDecoder, SymbolEncoder
from ..entropy.tables import geometric_delta_table

BAND_EDGES = (0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 560, 960)   # MDCT bins at hop 960 (25 Hz each)
TILE_SAMPLES = 1920  # 40 ms at 48 kHz: each level covers this much time
K_MIN, K_MAX = -8, 4  # level range: fill fractions 4**-8 (-48 dB) .. 4**4
K_START = -1          # the level before a band's first cell (0.25, the scale-derived fill's default)
FILL_TARGET = 0.6     # encoder's share of the measured energy (noise of the right level still adds error)
DELTA_RANGE = 12      # the table covers level differences -12 .. 12 (every possible one)
DELTA_DECAY = 0.3     # P(d) ~ DELTA_DECAY ** |d|


DELTA_TABLE = geometric_delta_table(DELTA_RANGE, DELTA_DECAY)


def band_edges(bins: int) -> list[int]:
    """Band edges for ``bins`` MDCT bins (the 960-bin edges, scaled)."""
    return [round(e * bins / BAND_EDGES[-1]) for e in BAND_EDGES]


def tile_frames(bins: int) -> int:
    """Frames per level for a hop of ``bins`` samples (2 at the shipped 960)."""
    return max(1, TILE_SAMPLES // bins)


def _cell_sums(v: torch.Tensor, edges: list[int]) -> torch.Tensor:
    """(B, bins, 1, T) -> (B, bands, T / tile): sums over each band and tile."""
    b, bins, _, t = v.shape
    tile = tile_frames(bins)
    cs = torch.nn.functional.pad(v[:, :, 0].double().cumsum(1), (0, 0, 1, 0))
    bands = cs[:, edges[1:]] - cs[:, edges[:-1]]
    return bands.reshape(b, len(edges) - 1, t // tile, tile).sum(-1)


def coded_cells(y_sym: np.ndarray) -> np.ndarray:
    """Boolean (B, bands, T / tile): the cells holding at least one zero symbol (those carry a level)."""
    zeros = torch.from_numpy(y_sym == 0).to(torch.float64)
    return (_cell_sums(zeros, band_edges(y_sym.shape[1])) > 0).numpy()


def measure_levels(y: torch.Tensor, y_sym: np.ndarray, variance: torch.Tensor) -> np.ndarray:
    """Levels (B, bands, T / tile) from the true coefficients ``y``, their symbols and the predicted
    zero-bin variance of every coefficient (fraction 1)."""
    edges = band_edges(y.shape[1])
    zeros = torch.from_numpy(y_sym == 0).to(torch.float64)
    energy = _cell_sums(y.detach().double().cpu() ** 2 * zeros, edges)
    predicted = _cell_sums(variance.double().cpu() * zeros, edges)
    ratio = FILL_TARGET * energy / predicted.clamp_min(1e-30)
    k = torch.round(torch.log(ratio.clamp_min(4.0**(K_MIN - 1))) / np.log(4.0))
    return k.clamp(K_MIN, K_MAX).long().numpy()


def _rows(cells: np.ndarray):
    """Per (channel, band) row: the tile indices of its coded cells, in coding order."""
    b, n, _ = cells.shape
    for c in range(b):
        for band in range(n):
            yield c, band, np.flatnonzero(cells[c, band])


def encode_levels(enc: SymbolEncoder, levels: np.ndarray, cells: np.ndarray) -> float:
    """Code the levels of the coded cells; returns their ideal bit count."""
    deltas = [np.diff(levels[c, band, tiles], prepend=K_START) for c, band, tiles in _rows(cells)]
    deltas = np.concatenate(deltas) if deltas else np.zeros(0, np.int64)
    index = np.zeros(len(deltas), np.int64)
    enc.encode(deltas, index, DELTA_TABLE)
    return DELTA_TABLE.ideal_bits(deltas, index)


def decode_levels(dec: SymbolDecoder, cells: np.ndarray) -> np.ndarray:
    """The levels :func:`encode_levels` coded (``K_START`` where a cell carries none)."""
    deltas = dec.decode(np.zeros(int(cells.sum()), np.int64), DELTA_TABLE)
    levels = np.full(cells.shape, K_START, np.int64)
    pos = 0
    for c, band, tiles in _rows(cells):
        levels[c, band, tiles] = K_START + np.cumsum(deltas[pos:pos + len(tiles)])
        pos += len(tiles)
    return np.clip(levels, K_MIN, K_MAX)


def fill_fraction(levels: np.ndarray, bins: int) -> torch.Tensor:
    """Per-coefficient fill fraction (B, bins, 1, T) from levels (B, bands, T / tile)."""
    widths = torch.tensor(np.diff(band_edges(bins)))
    frac = torch.from_numpy(4.0 ** levels.astype(np.float64)).float()
    return frac.repeat_interleave(widths, dim=1).repeat_interleave(tile_frames(bins), dim=2)[:, :, None]
