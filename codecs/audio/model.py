"""The learned parts of the audio codec around the fixed MDCT.

Skeleton, as for images: analysis -> gain -> quantizer -> entropy model -> inverse gain ->
synthesis.  Here the analysis is the orthonormal MDCT (:mod:`.mdct`) followed by learned
per-bin *gain units* (one vector per quality level, interpolated geometrically between
levels, so one set of weights covers every rate); the quantizer rounds; the synthesis is a
learned *dequantizer* (it moves each non-zero value towards zero by the amount that
minimises the expected error given its scale, i.e. a conditional-mean reconstruction),
a *noise fill* for the coefficients coded as zero (random signs, a fraction of the energy the
coded scale puts inside the zero bin, shaped per coefficient by a small learned net over
neighbouring bins when ``fill_width`` > 0), then the inverse gain and the inverse MDCT.
Training and the decoder share that reconstruction (:meth:`AudioModel.reconstruct`).  The entropy
model (a scale hyperprior with a frame-parity context) and its exact coder are in :mod:`.latent`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..latent import interpolate_levels
from .latent import FrameContextPrior, from_grid, log2_magnitude, to_grid, zero_bin_variance
from .postfilter import PostFilter


@dataclass
class AudioModelConfig:
    """Everything needed to rebuild an audio model; stored inside its weights file."""

    sample_rate: int = 48000     # the model's rate; inputs are resampled to it
    hop: int = 960               # MDCT hop = number of bins (20 ms at 48 kHz)
    levels: int = 12             # quality levels; gain doubles from one to the next
    gain0: float = 0.5           # initial gain of level 0 (quantizer step 1 / gain)
    hyper: int = 128             # hyper transform width
    z_channels: int = 24         # hyper-latent channels (one z vector per 4 frames)
    context: int = 16            # width of the frame-parity context net
    scale_levels: int = 96       # Gaussian scale grid of the coder
    scale_max: float = 1024.0
    noise_fill: float = 0.25     # energy fraction restored in coefficients coded as zero (0 = pure MSE decoding)
    fill_width: int = 0          # width of the learned noise-fill shaper (0 = the fixed fraction everywhere)
    postfilter: int = 0          # width of the decoder's speech post-filter (0 = none; :mod:`.postfilter`)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AudioModelConfig":
        return cls(**d)

    def lambdas(self) -> torch.Tensor:
        """Rate-distortion weights per level: at high rate a step of 1/g costs D = 1/(12 g^2), and
        dR/dD = -1/(2 ln2 D), so lambda = 6 g^2 / ln 2 balances the initial gains."""
        g = self.gain0 * 2.0 ** torch.arange(self.levels, dtype=torch.float32)
        return 6.0 * g**2 / math.log(2.0)


def zero_bin_fill(log_scale: torch.Tensor, fraction, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random-sign values for coefficients coded as 0, with ``fraction`` times the energy a Gaussian
    of scale ``exp(log_scale)`` has inside the zero bin: this restores the level of quiet bands
    (what mel distances and listeners notice) at a bounded cost in MSE.  ``fraction`` is a number
    or a tensor (the learned shaper's, or the band levels a stream codes, :mod:`.bandfill`); the
    fill does not train the scales."""
    sign = torch.randint(0, 2, log_scale.shape, generator=generator).to(log_scale.device) * 2 - 1
    return sign.float() * torch.sqrt(zero_bin_variance(log_scale)).float() * fraction**0.5


def dequantizer_net(width: int = 16) -> nn.Sequential:
    """(log2 magnitude, log-scale) of a coefficient -> how far (0 .. 0.5 step) to move it towards zero."""
    return nn.Sequential(nn.Conv2d(2, width, 1), nn.LeakyReLU(inplace=True), nn.Conv2d(width, 1, 1))


def fill_net(width: int) -> nn.Sequential:
    """(log2 magnitude, log-scale) over 5 neighbouring bins -> t, scaling the noise-fill fraction by
    4 ** tanh(t) (zero-initialised output: the fixed fraction until trained).  Decoder only, float."""
    net = nn.Sequential(nn.Conv2d(2, width, (5, 1), padding=(2, 0)), nn.LeakyReLU(inplace=True),
                        nn.Conv2d(width, 1, 1))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def _symbol_features(y_hat: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """(B, 2, bins, T): log2 magnitudes and log-scales of the decoded symbols, for the decoder nets."""
    return torch.cat([to_grid(log2_magnitude(y_hat)), to_grid(log_scale)], dim=1)


class AudioModel(FrameContextPrior):
    """Gains, the entropy model (:class:`~.latent.FrameContextPrior`), dequantizer and noise fill
    (see module doc)."""

    def __init__(self, config: AudioModelConfig):
        c = config
        super().__init__(c.hop, c.hyper, c.z_channels, c.context, c.scale_max)
        self.config = config
        init = math.log(c.gain0) + math.log(2.0) * torch.arange(c.levels, dtype=torch.float32)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, c.hop))
        self.dequantizer = dequantizer_net()
        self.fill = fill_net(c.fill_width) if c.fill_width else None
        self.postfilter = PostFilter(c.postfilter) if c.postfilter else None

    def gains(self, quality: torch.Tensor) -> torch.Tensor:
        """Per-item gains (B, bins, 1, 1) for qualities in [0, levels - 1] (geometric interpolation)."""
        return interpolate_levels(self.log_gain, quality)[:, :, None, None]

    def dequantize(self, y_hat: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Symbols (float, any device) -> reconstruction in the gain domain."""
        shrink = 0.5 * torch.sigmoid(from_grid(self.dequantizer(_symbol_features(y_hat, log_scale))))
        return y_hat - torch.sign(y_hat) * shrink

    def reconstruct(self, y_hat: torch.Tensor, log_scale: torch.Tensor, noise_fill: float | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoded coefficients in the gain domain: non-zero symbols dequantized, zeros noise-filled
        with ``noise_fill`` (a number or a per-coefficient tensor; default the config's fraction).
        Training and the decoder both go through here."""
        fill = self.config.noise_fill if noise_fill is None else noise_fill
        deq = self.dequantize(y_hat, log_scale).float()
        if not isinstance(fill, torch.Tensor) and not fill:
            return deq
        if self.fill is not None:
            shaper = self.fill(_symbol_features(y_hat, log_scale.detach())).float()
            fill = fill * 4.0 ** torch.tanh(from_grid(shaper))
        return torch.where(y_hat == 0, zero_bin_fill(log_scale, fill, generator), deq)

    def forward(self, coefs: torch.Tensor, quality: torch.Tensor) -> dict:
        """MDCT coefficients (B, bins, 1, T), T a multiple of 4 -> reconstruction and likelihoods."""
        gain = self.gains(quality)
        y_hat, log_scale, likelihoods = self.latent_forward(coefs * gain)
        return {"coefs_hat": self.reconstruct(y_hat, log_scale) / gain, "likelihoods": likelihoods}
