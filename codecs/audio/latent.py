"""The audio latent's entropy model, as trained and as coded, side by side.

Entropy model: a scale hyperprior over frames (bins are channels, frames run along time):
``h_a`` (encoder only, float) summarises ``log(1 + |y|)`` into ``z`` at a quarter of the
frame rate; ``z`` is coded with a factorized prior; ``h_s`` maps ``z`` to a log-scale for
every coefficient.  A two-pass *frame-parity context* then sharpens the odd frames: once
the even frames are decoded, a small conv net over frequency reads, for each odd frame,
its hyper log-scales and the magnitudes of the two even frames around it, and corrects its
log-scales (tonal music repeats from frame to frame).  Each chunk therefore costs two passes,
never a loop over frames.

:class:`FrameContextPrior` holds the nets and computes the likelihoods of the rate term
(training and evaluation); :class:`AudioLatentCodec` codes the same symbols exactly: ``h_s``
and the context net run in :class:`ncodec.entropy.FixedPointNet`, the context reads
``log2(1 + |k|)`` through an exact piecewise-linear formula (:func:`log2_magnitude`), and a
coefficient's fixed-point natural-log scale picks its table row by integer thresholds, so
encoder and decoder agree bit for bit on any machine.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from compressai.entropy_models import EntropyBottleneck

from ..entropy import (FactorizedPrior, FixedPointNet, LogScaleGaussian, SymbolDecoder, SymbolEncoder, from_fixed,
                       to_fixed)
from ..latent import (HyperLatentCodec, gaussian_likelihood, hyper_forward, noise_quantizer, rounding_quantizer,
                      training_quantizer)
from . import bandfill, frameboost

# Each scale's table reaches about 8 sigma (the entropy package's default, 6.1 sigma, left music's
# transients to escape coding: 1.3 % more bytes than the model's likelihoods at mid qualities).
TAIL_MASS = 1e-15
ZERO_BIN_SCALE_MAX = 1024.0   # beyond it the zero-bin variance is 1/12 to 6 digits, and float64 loses it


def zero_bin_variance(log_scale: torch.Tensor) -> torch.Tensor:
    """float64 energy a Gaussian of scale ``exp(log_scale)`` has inside the zero bin (|y| < 1/2);
    scales are capped at :data:`ZERO_BIN_SCALE_MAX` (the formula's cancellation returned garbage
    from about 1e4 on: 188.7 at 1e6, 1.8e20 at 1e12, where the answer is 1/12)."""
    sigma = torch.exp(log_scale.detach().double().clamp(max=math.log(ZERO_BIN_SCALE_MAX)))
    a = 0.5 / sigma
    inside = (2 * torch.special.ndtr(a) - 1).clamp_min(1e-300)
    var = sigma**2 * (1 - 2 * a * torch.exp(-0.5 * a**2) / math.sqrt(2 * math.pi) / inside)
    return var.clamp_min(0)


def log2_magnitude(k: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear log2(1 + |k|) of integer-valued ``k`` (exact in float64: frexp and
    one subtraction, so encoder and decoder get the same bits)."""
    mantissa, exponent = torch.frexp(k.abs() + 1)
    return (exponent - 2).to(k.dtype) + 2 * mantissa


def to_grid(t: torch.Tensor) -> torch.Tensor:
    """(B, bins, 1, T) -> (B, 1, bins, T): bins become an image axis for the 2-D nets."""
    return t.transpose(1, 2)


def from_grid(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2)


def context_inputs(hyper_odd: torch.Tensor, even_magnitudes: torch.Tensor) -> torch.Tensor:
    """Context net input (B, 3, bins, T/2) from the odd frames' hyper log-scales and the even
    frames' log2 magnitudes, both (B, bins, 1, T/2): frame 2j+1 sees frames 2j and 2j+2."""
    following = torch.cat([even_magnitudes[..., 1:], torch.zeros_like(even_magnitudes[..., :1])], dim=-1)
    return torch.cat([to_grid(hyper_odd), to_grid(even_magnitudes), to_grid(following)], dim=1)


def _conv_t(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, (1, 5), stride=(1, 2), padding=(0, 2), output_padding=(0, 1))


class HyperAnalysis(nn.Module):
    """log(1 + |y|) -> z (encoder side only; runs in float)."""

    def __init__(self, bins: int, width: int, z_channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(bins, width, (1, 3), padding=(0, 1)), nn.LeakyReLU(inplace=True),
            nn.Conv2d(width, width, (1, 5), stride=(1, 2), padding=(0, 2)), nn.LeakyReLU(inplace=True),
            nn.Conv2d(width, z_channels, (1, 5), stride=(1, 2), padding=(0, 2)),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.log1p(y.abs()))


def hyper_synthesis(bins: int, width: int, z_channels: int) -> nn.Sequential:
    """z_hat -> natural-log scale of every coefficient.  Runs in fixed point at inference."""
    return nn.Sequential(
        _conv_t(z_channels, width), nn.LeakyReLU(inplace=True), _conv_t(width, width), nn.LeakyReLU(inplace=True),
        nn.Conv2d(width, bins, (1, 3), padding=(0, 1)),
    )


def context_net(width: int) -> nn.Sequential:
    """Per odd frame, over frequency: (hyper log-scale, log2 magnitudes of the previous and next
    even frames) -> log-scale correction.  Runs in fixed point at inference."""
    return nn.Sequential(
        nn.Conv2d(3, width, (5, 1), padding=(2, 0)), nn.LeakyReLU(inplace=True),
        nn.Conv2d(width, width, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(width, 1, 1),
    )


class FrameContextPrior(nn.Module):
    """The entropy model's nets (``h_a``, the z density, ``h_s``, the frame-parity ``context``) and
    the likelihoods of the rate term; scales are capped at ``scale_max`` as on the coder's grid."""

    def __init__(self, bins: int, width: int, z_channels: int, context_width: int, scale_max: float):
        super().__init__()
        self.h_a = HyperAnalysis(bins, width, z_channels)
        self.h_s = hyper_synthesis(bins, width, z_channels)
        self.z_prior = EntropyBottleneck(z_channels)
        self.context = context_net(context_width)
        self.log_scale_max = math.log(scale_max)

    def log_scales(self, hyper: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        """Final log-scales: hyper only for even frames, hyper + context for odd frames."""
        even_mag = log2_magnitude(y_hat.detach()[..., 0::2])
        odd = hyper[..., 1::2] + from_grid(self.context(context_inputs(hyper[..., 1::2], even_mag)))
        return torch.stack([hyper[..., 0::2], odd], dim=-1).flatten(-2)

    def latent_forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Gain-scaled coefficients (B, bins, 1, T), T a multiple of 4 -> quantized values (noisy or
        rounded as in training, rounded in evaluation, as :class:`AudioLatentCodec` codes them), their
        log-scales and the likelihoods of y and z."""
        z_lik, hyper = hyper_forward(self.h_a, self.h_s, self.z_prior, y,
                                     noise_quantizer if self.training else rounding_quantizer)
        y_rate, y_hat = (training_quantizer if self.training else rounding_quantizer)(y)
        log_scale = self.log_scales(hyper, y_hat).float()
        y_lik = gaussian_likelihood(y_rate, torch.exp(log_scale.clamp(max=self.log_scale_max)))
        return y_hat, log_scale, [y_lik, z_lik]

    def aux_loss(self) -> torch.Tensor:
        return self.z_prior.loss()


class AudioLatentCodec:
    """compress / decompress of one chunk's gain-scaled MDCT coefficients ``(B, bins, 1, T)``:
    ``z`` with the stored factorized prior, then ``y`` in two passes, even frames with the hyper
    scales, odd frames with the scales the context net corrects from the decoded even frames."""

    def __init__(self, model, z_prior: FactorizedPrior):
        """``model``: an :class:`~ncodec.audio.model.AudioModel`; ``z_prior``: its stored z tables."""
        self.hyper = HyperLatentCodec(model.h_a, model.h_s, z_prior)
        self.context = FixedPointNet(model.context)
        self.gaussian = LogScaleGaussian(model.config.scale_levels, model.config.scale_max, TAIL_MASS)

    def _odd_log_scales(self, hyper: torch.Tensor, y_sym: np.ndarray) -> torch.Tensor:
        """Fixed-point log-scales of the odd frames from the hyper scales and the even frames
        of ``y_sym`` (its odd frames are ignored)."""
        mag = to_fixed(log2_magnitude(torch.from_numpy(y_sym[..., 0::2]).double()))
        return hyper[..., 1::2] + from_grid(self.context(context_inputs(hyper[..., 1::2], mag)))

    def compress(self, y: torch.Tensor, boosts: np.ndarray, band_fill: int, top_bin: int
                 ) -> tuple[dict, np.ndarray, torch.Tensor, dict]:
        """Sections, integer symbols, fixed-point log-scales and ideal bit counts (``latent``: y and z
        under the entropy model; ``side``: the levels that follow); the ``y`` section ends with the
        chunk's band fill levels (:mod:`.bandfill`, layout ``band_fill``, up to the input's Nyquist
        frequency at bin ``top_bin``) and the frame boost levels ``boosts`` already applied to ``y``
        (:mod:`.frameboost`)."""
        if y.shape[-1] % 4:
            raise ValueError("chunks must have a multiple of 4 frames")
        ez, ey = SymbolEncoder(), SymbolEncoder()
        hyper, z_bits = self.hyper.compress(y, ez)
        y_sym = torch.round(y.detach().double().cpu()).long().numpy()
        odd_scales = self._odd_log_scales(hyper, y_sym)
        latent_bits = (z_bits + self.gaussian.encode(ey, y_sym[..., 0::2], hyper[..., 0::2])
                       + self.gaussian.encode(ey, y_sym[..., 1::2], odd_scales))
        scales = self._merge(hyper, odd_scales)
        levels = bandfill.measure_levels(y, y_sym, zero_bin_variance(from_fixed(scales, torch.float64)), band_fill)
        side_bits = bandfill.encode_levels(ey, levels, bandfill.coded_cells(y_sym, band_fill, top_bin), band_fill)
        side_bits += frameboost.encode_levels(ey, boosts)
        return {"z": ez.finish(), "y": ey.finish()}, y_sym, scales, {"latent": latent_bits, "side": side_bits}

    def decompress(self, sections: dict, shape: tuple, band_fill: int, top_bin: int
                   ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, np.ndarray]:
        """Symbols, fixed-point log-scales, per-coefficient fill fractions and frame boost levels
        of a chunk of ``shape`` (B, bins, 1, T) whose band fill levels are in layout ``band_fill``
        (``top_bin`` as for :meth:`compress`)."""
        b, _, _, t = shape
        hyper = self.hyper.decompress(SymbolDecoder(sections["z"]), (b, self.hyper.channels, 1, t // 4))
        dec = SymbolDecoder(sections["y"])
        y_sym = np.zeros(shape, dtype=np.int64)
        y_sym[..., 0::2] = self.gaussian.decode(dec, hyper[..., 0::2])
        odd_scales = self._odd_log_scales(hyper, y_sym)
        y_sym[..., 1::2] = self.gaussian.decode(dec, odd_scales)
        levels = bandfill.decode_levels(dec, bandfill.coded_cells(y_sym, band_fill, top_bin), band_fill)
        fraction = bandfill.fill_fraction(levels, shape[1], band_fill)
        return y_sym, self._merge(hyper, odd_scales), fraction, frameboost.decode_levels(dec, t)

    @staticmethod
    def _merge(hyper: torch.Tensor, odd_scales: torch.Tensor) -> torch.Tensor:
        out = hyper.clone()
        out[..., 1::2] = odd_scales
        return out

