"""The audio latent codec: quantized MDCT symbols <-> byte sections, exactly.

``z`` (the hyper-latent) is coded with the stored factorized prior; ``y`` is coded in two
passes, even frames with the hyper scales, then odd frames with scales the context net
corrects from the decoded even frames (see :mod:`.model`).  Every number that reaches the
range coder comes from :class:`ncodec.entropy.FixedPointNet` on integers, so encoder and
decoder agree bit for bit on any machine; the scale of a coefficient is its natural-log
scale in fixed point, mapped to a table row by integer thresholds.
"""
from __future__ import annotations

import numpy as np
import torch

from ..entropy import FactorizedPrior, FixedPointNet, GaussianConditional, SymbolDecoder, SymbolEncoder, from_fixed, to_fixed
from ..entropy.fixedpoint import ACT_FRAC
from ..entropy.tables import gaussian_scale_table, gaussian_tables
from . import bandfill, frameboost
from .model import SCALE_MIN, AudioModel, context_inputs, from_grid, log2_magnitude, zero_bin_variance


class LogScaleGaussian(GaussianConditional):
    """:class:`~ncodec.entropy.GaussianConditional` whose rows are chosen by a fixed-point
    natural-log scale (thresholds at the log-midpoints of the scale grid)."""

    def __init__(self, levels: int, scale_max: float):
        self.scales = gaussian_scale_table(levels, SCALE_MIN, scale_max)
        self.tables = gaussian_tables(self.scales)
        mids = 0.5 * (np.log(self.scales[:-1]) + np.log(self.scales[1:]))
        self.thresholds = torch.from_numpy(np.ceil(mids * 2**ACT_FRAC)).double()


class AudioLatentCodec:
    """compress / decompress of one chunk's gain-scaled MDCT coefficients ``(B, bins, 1, T)``."""

    def __init__(self, model: AudioModel, z_prior: FactorizedPrior):
        self.h_a = model.h_a
        self.h_s = FixedPointNet(model.h_s)
        self.context = FixedPointNet(model.context)
        self.z_prior = z_prior
        self.gaussian = LogScaleGaussian(model.config.scale_levels, model.config.scale_max)

    def _hyper(self, z_sym: np.ndarray) -> torch.Tensor:
        return self.h_s(self.z_prior.dequantize_fixed(z_sym))

    def _odd_log_scales(self, hyper: torch.Tensor, y_sym: np.ndarray) -> torch.Tensor:
        """Fixed-point log-scales of the odd frames from the hyper scales and the even frames
        of ``y_sym`` (its odd frames are ignored)."""
        mag = to_fixed(log2_magnitude(torch.from_numpy(y_sym[..., 0::2]).double()))
        return hyper[..., 1::2] + from_grid(self.context(context_inputs(hyper[..., 1::2], mag)))

    def compress(self, y: torch.Tensor, boosts: np.ndarray, band_fill: int, top_bin: int
                 ) -> tuple[dict, np.ndarray, torch.Tensor, float]:
        """Sections, integer symbols, fixed-point log-scales and the ideal bit count; the ``y``
        section ends with the chunk's band fill levels (:mod:`.bandfill`, layout ``band_fill``, up to
        the input's Nyquist frequency at bin ``top_bin``) and the frame boost levels ``boosts``
        already applied to ``y`` (:mod:`.frameboost`)."""
        if y.shape[-1] % 4:
            raise ValueError("chunks must have a multiple of 4 frames")
        with torch.no_grad():
            z_sym = self.z_prior.quantize(self.h_a(y).float())
        hyper = self._hyper(z_sym)
        y_sym = torch.round(y.detach().double().cpu()).long().numpy()
        odd_scales = self._odd_log_scales(hyper, y_sym)
        ez, ey = SymbolEncoder(), SymbolEncoder()
        bits = (self.z_prior.encode(ez, z_sym) + self.gaussian.encode(ey, y_sym[..., 0::2], hyper[..., 0::2])
                + self.gaussian.encode(ey, y_sym[..., 1::2], odd_scales))
        scales = self._merge(hyper, odd_scales)
        levels = bandfill.measure_levels(y, y_sym, zero_bin_variance(from_fixed(scales, torch.float64)), band_fill)
        bits += bandfill.encode_levels(ey, levels, bandfill.coded_cells(y_sym, band_fill, top_bin), band_fill)
        bits += frameboost.encode_levels(ey, boosts)
        return {"z": ez.finish(), "y": ey.finish()}, y_sym, scales, bits

    def decompress(self, sections: dict, shape: tuple, band_fill: int, boosted: bool, top_bin: int
                   ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor | None, np.ndarray]:
        """Symbols, fixed-point log-scales, per-coefficient fill fractions and frame boost levels
        of a chunk of ``shape`` (B, bins, 1, T), for a stream that codes band fill levels in layout
        ``band_fill`` (0: none, and the fractions are None; ``top_bin`` as for :meth:`compress`) and
        frame boosts (``boosted``; otherwise the levels are all 0)."""
        b, _, _, t = shape
        z_sym = self.z_prior.decode(SymbolDecoder(sections["z"]), (b, len(self.z_prior.medians_fixed), 1, t // 4))
        hyper = self._hyper(z_sym)
        dec = SymbolDecoder(sections["y"])
        y_sym = np.zeros(shape, dtype=np.int64)
        y_sym[..., 0::2] = self.gaussian.decode(dec, hyper[..., 0::2])
        odd_scales = self._odd_log_scales(hyper, y_sym)
        y_sym[..., 1::2] = self.gaussian.decode(dec, odd_scales)
        fraction = None
        if band_fill:
            levels = bandfill.decode_levels(dec, bandfill.coded_cells(y_sym, band_fill, top_bin), band_fill)
            fraction = bandfill.fill_fraction(levels, shape[1], band_fill)
        boosts = frameboost.decode_levels(dec, t) if boosted else np.zeros(t, np.int64)
        return y_sym, self._merge(hyper, odd_scales), fraction, boosts

    @staticmethod
    def _merge(hyper: torch.Tensor, odd_scales: torch.Tensor) -> torch.Tensor:
        out = hyper.clone()
        out[..., 1::2] = odd_scales
        return out

