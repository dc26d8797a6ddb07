"""Band-energy noise fill: side information that tells the decoder how loud the coefficients
coded as zero should be.

The scale-derived fill (:func:`.model.zero_bin_fill`) infers the energy of a zero-coded
coefficient from its coded scale, which puts noise into bands the input barely has and
leaves others too quiet.  Here the encoder *measures* it instead: per channel, band and tile
(20 or 40 ms, :func:`tile_frames`) it takes the energy of the true gain-domain coefficients whose
symbol is 0, divides it by the zero-bin variance their coded scales predict, and codes the
level ``k = round(log4(FILL_TARGET x ratio))`` (6 dB steps, clipped to ``K_MIN`` .. ``K_MAX``);
the decoder then fills those zeros with the fraction ``4 ** k`` of the predicted
variance.  Only cells holding at least one zero carry a level (the decoder finds them from the
symbols it has already decoded).  The levels follow the chunk's ``y`` symbols in the same
range-coded section.

Bands: 32 of about equal width on the mel scale (:data:`MEL_EDGES`), about one critical band
each (300 Hz at 2 kHz).  At 24 kbps nearly every coefficient above 1 kHz is noise fill, so the
band layout *is* the decoded spectral envelope there.  Levels go from -72 dB (:data:`K_MIN`: the
bands above a lowpassed input's cutoff) to +24 dB.  Each level is predicted from the previous tile
and the band below by the median edge detector of LOCO-I (:func:`_predict`); the residual is
coded with one of four fixed tables chosen from the previous tile (:func:`_contexts`,
:data:`RESIDUAL_COUNTS`): about 1.7 bits a cell.  Bands that start above the input's Nyquist
frequency carry no levels (16 kHz speech: 9 of the 32; the decoder's resampler removes whatever is
filled there).

Two layouts, which differ in their tiles (the stream's ``bf`` field, :data:`TILE_SAMPLES`):
``bf=3`` (20 ms tiles: the fill follows the signal's level closely in time, speech pauses and
onsets) and ``bf=2`` (40 ms tiles, half the levels: for targets below 5 kbps per channel, where
``bf=3``'s levels would not fit), each with residual tables measured on its own tiles.
"""
from __future__ import annotations

import numpy as np
import torch

from ..entropy import SymbolDecoder, SymbolEncoder
from ..entropy.tables import stack_rows

# Band edges in MDCT bins at hop 960 (25 Hz each), scaled for other hops by band_edges().
MEL_EDGES = (0, 4, 8, 12, 16, 21, 27, 33, 40, 48, 57, 67, 79, 91, 105, 121, 138, 158, 180, 204, 232, 262, 296,
             335, 377, 425, 479, 538, 605, 679, 763, 856, 960)
TILE_SAMPLES = {2: 1920, 3: 960}   # by the stream's ``bf`` value: samples at 48 kHz each level covers
CURRENT = 3          # the layout the encoder writes, except at low rates (:func:`layout_for`)
LOW_RATE = 2         # the layout for targets under LOW_RATE_KBPS per coded channel or qualities under LOW_RATE_QUALITY
LOW_RATE_KBPS = 5.0
LOW_RATE_QUALITY = 4.0   # 0-based (the CLI's --quality 5)
K_MIN = -12          # the lowest level (fill fraction 4 ** -12, -72 dB)
K_MAX = 4            # the highest level (fill fraction 4 ** 4)
K_START = -1         # the level before a band's first cell (0.25, the scale-derived fill's default)
FILL_TARGET = 0.6    # encoder's share of the measured energy (noise of the right level still adds error)
RESIDUAL_SPAN = K_MAX - K_MIN   # residuals lie in -RESIDUAL_SPAN .. RESIDUAL_SPAN

# Residual counts -16 .. 16 per context (:func:`_contexts`), each measured with its
# layout on ten training files (none held out for evaluation) at 6, 12, 24, 48 and 64 kbps (first
# 10 s of each, every trial encode of the rate search), plus one so that every residual stays codable.
RESIDUAL_COUNTS = {2: (
    (1, 1, 1, 1, 2, 57, 26, 48, 67, 156, 228, 399, 830, 1721, 6440, 57352, 146841, 48175, 4722, 1094, 433, 190,
     91, 47, 21, 13, 11, 11, 2, 1, 1, 1, 1),
    (1, 1, 1, 1, 7, 5, 10, 20, 55, 117, 167, 333, 558, 1413, 6046, 49406, 114727, 49039, 4690, 710, 224, 85, 43,
     23, 6, 3, 6, 5, 1, 1, 1, 1, 1),
    (1, 1, 1, 1, 1, 1, 8, 12, 24, 79, 86, 218, 420, 1192, 4734, 19756, 35119, 14983, 6175, 2434, 1043, 495, 265,
     117, 65, 29, 16, 9, 4, 1, 1, 1, 1),
    (1, 1, 1, 1, 1, 1, 2, 6, 5, 3, 6, 24, 24, 44, 75, 209, 639, 117, 29, 4, 7, 12, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     1),
), 3: (
    (1, 1, 10, 7, 5, 106, 70, 90, 109, 199, 313, 598, 1202, 2982, 12505, 88644, 210618, 80094, 10684, 2801, 1009,
     432, 188, 121, 47, 35, 10, 6, 6, 1, 1, 1, 1),
    (1, 1, 1, 1, 55, 33, 96, 110, 138, 219, 325, 543, 1037, 2578, 11342, 84184, 193841, 83905, 10568, 1867, 640,
     250, 113, 48, 32, 13, 16, 7, 2, 1, 1, 1, 1),
    (1, 1, 1, 4, 5, 11, 21, 99, 172, 331, 393, 648, 1167, 2792, 8482, 30346, 66928, 27885, 12875, 5357, 2390, 1227,
     661, 423, 227, 134, 85, 31, 20, 1, 1, 1, 1),
    (1, 1, 1, 2, 9, 16, 33, 83, 108, 139, 186, 260, 294, 351, 620, 1434, 43025, 805, 91, 35, 53, 25, 6, 5, 6, 3, 1,
     1, 1, 1, 1, 1, 1),
)}
RESIDUAL_TABLES = {mode: stack_rows([np.append(np.array(c) / sum(c), 1e-9) for c in counts],
                                    [-RESIDUAL_SPAN] * len(counts)) for mode, counts in RESIDUAL_COUNTS.items()}


def layout_for(kbps_per_channel: float | None, quality: float | None) -> int:
    """The layout an encode writes: :data:`CURRENT`, but :data:`LOW_RATE` for a bitrate target under
    :data:`LOW_RATE_KBPS` per coded channel or a fixed 0-based quality under :data:`LOW_RATE_QUALITY`
    (20 ms tiles cost about 1.2 kbps more per channel than 40 ms ones: at 6 kbps on stereo music
    they left the rate search no quality that fit)."""
    low = quality < LOW_RATE_QUALITY if quality is not None else kbps_per_channel < LOW_RATE_KBPS
    return LOW_RATE if low else CURRENT


def band_edges(bins: int) -> list[int]:
    """Band edges for ``bins`` MDCT bins (the 960-bin edges, scaled)."""
    return [round(e * bins / MEL_EDGES[-1]) for e in MEL_EDGES]


def tile_frames(bins: int, mode: int) -> int:
    """Frames per level of layout ``mode`` for a hop of ``bins`` samples (layout 3 at the shipped
    480: 2)."""
    return max(1, TILE_SAMPLES[mode] // bins)


def _cell_sums(v: torch.Tensor, mode: int) -> torch.Tensor:
    """(B, bins, 1, T) -> (B, bands, T / tile): sums over each band and tile of layout ``mode``."""
    b, bins, _, t = v.shape
    edges, tile = band_edges(bins), tile_frames(bins, mode)
    cs = torch.nn.functional.pad(v[:, :, 0].double().cumsum(1), (0, 0, 1, 0))
    bands = cs[:, edges[1:]] - cs[:, edges[:-1]]
    return bands.reshape(b, len(edges) - 1, t // tile, tile).sum(-1)


def coded_cells(y_sym: np.ndarray, mode: int, top_bin: int) -> np.ndarray:
    """Boolean (B, bands, T / tile): the cells holding at least one zero symbol (those carry a
    level), in the bands that start below bin ``top_bin`` (the input's Nyquist frequency: the
    decoder's resampler removes whatever is filled above it)."""
    zeros = torch.from_numpy(y_sym == 0).to(torch.float64)
    cells = (_cell_sums(zeros, mode) > 0).numpy()
    cells[:, sum(e < top_bin for e in band_edges(y_sym.shape[1])[:-1]):] = False
    return cells


def measure_levels(y: torch.Tensor, y_sym: np.ndarray, variance: torch.Tensor, mode: int) -> np.ndarray:
    """Levels (B, bands, T / tile) from the true coefficients ``y``, their symbols and the predicted
    zero-bin variance of every coefficient (fraction 1)."""
    zeros = torch.from_numpy(y_sym == 0).to(torch.float64)
    energy = _cell_sums(y.detach().double().cpu() ** 2 * zeros, mode)
    predicted = _cell_sums(variance.double().cpu() * zeros, mode)
    ratio = FILL_TARGET * energy / predicted.clamp_min(1e-30)
    k = torch.round(torch.log(ratio.clamp_min(4.0**(K_MIN - 1))) / np.log(4.0))
    return k.clamp(K_MIN, K_MAX).long().numpy()


def _contexts(previous: np.ndarray) -> np.ndarray:
    """Table row per band from the previous tile's levels: 3 where the level and its band below's
    are both the lowest (bands the input does not have), else min(|level - band below's|, 2)."""
    below = np.concatenate([[K_START], previous[:-1]])
    return np.where((previous == K_MIN) & (below == K_MIN), 3, np.minimum(np.abs(previous - below), 2))


def _predict(previous: np.ndarray, coded: np.ndarray, values: np.ndarray, residual: bool
             ) -> tuple[np.ndarray, np.ndarray]:
    """One tile, bands upwards: each level is predicted by the median of (left, below,
    left + below - left's below) (left = the previous tile's level, below = this tile's band
    below); coded bands take ``values`` (residuals to add when ``residual``, else the levels
    themselves), the others their prediction.  Returns the tile's levels and residuals."""
    levels, residuals = np.empty(len(previous), np.int64), np.zeros(len(previous), np.int64)
    below, below_left = K_START, K_START
    for band, left in enumerate(previous.tolist()):
        guess = min(max(left + below - below_left, min(left, below)), max(left, below))
        level = guess
        if coded[band]:
            level = min(max(guess + int(values[band]), K_MIN), K_MAX) if residual else int(values[band])
        levels[band], residuals[band] = level, level - guess
        below, below_left = level, left
    return levels, residuals


def encode_levels(enc: SymbolEncoder, levels: np.ndarray, cells: np.ndarray, mode: int) -> float:
    """Code the levels of the coded cells in layout ``mode``, each tile's residuals in one call (its
    tables depend on the tile before it); returns their ideal bit count."""
    tables = RESIDUAL_TABLES[mode]
    residuals, indices = [], []
    for c in range(levels.shape[0]):
        previous = np.full(levels.shape[1], K_START, np.int64)
        for t in range(levels.shape[2]):
            coded = cells[c, :, t]
            index = _contexts(previous)[coded]
            previous, tile_residuals = _predict(previous, coded, levels[c, :, t], residual=False)
            if len(index):
                enc.encode(tile_residuals[coded], index, tables)
                residuals.append(tile_residuals[coded])
                indices.append(index)
    if not residuals:
        return 0.0
    return tables.ideal_bits(np.concatenate(residuals), np.concatenate(indices))


def decode_levels(dec: SymbolDecoder, cells: np.ndarray, mode: int) -> np.ndarray:
    """The levels :func:`encode_levels` coded (cells without a level hold a value that fills nothing)."""
    tables = RESIDUAL_TABLES[mode]
    levels = np.full(cells.shape, K_START, np.int64)
    for c in range(cells.shape[0]):
        previous = np.full(cells.shape[1], K_START, np.int64)
        for t in range(cells.shape[2]):
            coded = cells[c, :, t]
            residuals = np.zeros(len(coded), np.int64)
            index = _contexts(previous)[coded]
            if len(index):
                residuals[coded] = dec.decode(index, tables)
            previous, _ = _predict(previous, coded, residuals, residual=True)
            levels[c, :, t] = previous
    return levels


def fill_fraction(levels: np.ndarray, bins: int, mode: int) -> torch.Tensor:
    """Per-coefficient fill fraction (B, bins, 1, T) from levels (B, bands, T / tile) of layout ``mode``."""
    widths = torch.tensor(np.diff(band_edges(bins)))
    frac = torch.from_numpy(4.0 ** levels.astype(np.float64)).float()
    return frac.repeat_interleave(widths, dim=1).repeat_interleave(tile_frames(bins, mode), dim=2)[:, :, None]
