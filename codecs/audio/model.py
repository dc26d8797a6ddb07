"""The learned parts of the audio codec around the fixed MDCT (training-time modules).

Skeleton, as for images: analysis -> gain -> quantizer -> entropy model -> inverse gain ->
synthesis.  Here the analysis is the orthonormal MDCT (:mod:`.mdct`) followed by learned
per-bin *gain units* (one vector per quality level, interpolated geometrically between
levels, so one set of weights covers every rate); the quantizer rounds; the synthesis is a
learned *dequantizer* (it moves each non-zero value towards zero by the amount that
minimises the expected error given its scale, i.e. a conditional-mean reconstruction),
a *noise fill* for the coefficients coded as zero (random signs, a fraction of the energy the
coded scale puts inside the zero bin, shaped per coefficient by a small learned net over
neighbouring bins when ``fill_width`` > 0), then the inverse gain and the inverse MDCT.
Training and the decoder share that reconstruction (:meth:`AudioModel.reconstruct`).

Entropy model: a scale hyperprior over frames (bins are channels, frames run along time):
``h_a`` (encoder only, float) summarises ``log(1 + |y|)`` into ``z`` at a quarter of the
frame rate; ``z`` is coded with a factorized prior; ``h_s`` maps ``z`` to a log-scale for
every coefficient.  A two-pass *frame-parity context* then sharpens the odd frames: once
the even frames are decoded, a small conv net over frequency reads, for each odd frame,
its hyper log-scales and the magnitudes of the two even frames around it, and corrects its
log-scales (tonal music repeats from frame to frame).  Each chunk therefore costs two passes, never a loop over
frames.  ``h_s`` and the context net only use layers :class:`ncodec.entropy.FixedPointNet`
evaluates exactly, and the context reads ``log2(1 + |k|)`` through an exact piecewise-
linear formula (:func:`log2_magnitude`), so the coder's probabilities are bit-identical on
every machine.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


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


SCALE_MIN = 0.11
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


def zero_bin_fill(log_scale: torch.Tensor, fraction, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random-sign values for coefficients coded as 0, with ``fraction`` times the energy a Gaussian
    of scale ``exp(log_scale)`` has inside the zero bin: this restores the level of quiet bands
    (what mel distances and listeners notice) at a bounded cost in MSE.  ``fraction`` is a number
    or a tensor (the learned shaper's, or the band levels a stream codes, :mod:`.bandfill`); the
    fill does not train the scales."""
    sign = torch.randint(0, 2, log_scale.shape, generator=generator).to(log_scale.device) * 2 - 1
    return sign.float() * torch.sqrt(zero_bin_variance(log_scale)).float() * fraction**0.5


def log2_magnitude(k: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear log2(1 + |k|) of integer-valued ``k`` (exact in float64: frexp and
    one subtraction, so encoder and decoder get the same bits)."""
    mantissa, exponent = torch.frexp(k.abs() + 1)
    return (exponent - 2).to(k.dtype) + 2 * mantissa


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


def to_grid(t: torch.Tensor) -> torch.Tensor:
    """(B, bins, 1, T) -> (B, 1, bins, T): bins become an image axis for the 2-D nets."""
    return t.transpose(1, 2)


def from_grid(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2)


def _symbol_features(y_hat: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """(B, 2, bins, T): log2 magnitudes and log-scales of the decoded symbols, for the decoder nets."""
    return torch.cat([to_grid(log2_magnitude(y_hat)), to_grid(log_scale)], dim=1)


def context_inputs(hyper_odd: torch.Tensor, even_magnitudes: torch.Tensor) -> torch.Tensor:
    """Context net input (B, 3, bins, T/2) from the odd frames' hyper log-scales and the even
    frames' log2 magnitudes, both (B, bins, 1, T/2): frame 2j+1 sees frames 2j and 2j+2."""
    following = torch.cat([even_magnitudes[..., 1:], torch.zeros_like(even_magnitudes[..., :1])], dim=-1)
    return torch.cat([to_grid(hyper_odd), to_grid(even_magnitudes), to_grid(following)], dim=1)


class AudioModel(nn.Module):
    """Gains, scale hyperprior, frame-parity context and dequantizer (see module doc)."""

    def __init__(self, config: AudioModelConfig, trainable_prior: bool = True):
        """``trainable_prior=False`` leaves out the z density (inference codes z with the tables
        tabulated from it, so loading a codec does not need CompressAI)."""
        super().__init__()
        self.config = config
        c = config
        init = math.log(c.gain0) + math.log(2.0) * torch.arange(c.levels, dtype=torch.float32)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, c.hop))
        self.h_a = HyperAnalysis(c.hop, c.hyper, c.z_channels)
        self.h_s = hyper_synthesis(c.hop, c.hyper, c.z_channels)
        if trainable_prior:
            from compressai.entropy_models import EntropyBottleneck

            self.z_prior = EntropyBottleneck(c.z_channels)
        self.context = context_net(c.context)
        self.dequantizer = dequantizer_net()
        self.fill = fill_net(c.fill_width) if c.fill_width else None

    def gains(self, quality: torch.Tensor) -> torch.Tensor:
        """Per-item gains (B, bins, 1, 1) for qualities in [0, levels - 1] (geometric interpolation)."""
        q = quality.float().clamp(0, self.config.levels - 1)
        lo = q.floor().long().clamp(max=self.config.levels - 2)
        t = (q - lo.float())[:, None]
        log_g = self.log_gain[lo] * (1 - t) + self.log_gain[lo + 1] * t
        return torch.exp(log_g)[:, :, None, None]

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

    def log_scales(self, hyper: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        """Final log-scales: hyper only for even frames, hyper + context for odd frames."""
        even_mag = log2_magnitude(y_hat.detach()[..., 0::2])
        odd = hyper[..., 1::2] + from_grid(self.context(context_inputs(hyper[..., 1::2], even_mag)))
        return torch.stack([hyper[..., 0::2], odd], dim=-1).flatten(-2)

    def forward(self, coefs: torch.Tensor, quality: torch.Tensor) -> dict:
        """MDCT coefficients (B, bins, 1, T), T a multiple of 4 -> reconstruction and likelihoods."""
        from ..image.models import gaussian_likelihood, rounding_quantizer, training_quantizer

        gain = self.gains(quality)
        y = coefs * gain
        z = self.h_a(y)
        with torch.autocast(device_type=y.device.type, enabled=False):
            z_hat, z_lik = self.z_prior(z.float())
        hyper = self.h_s(z_hat).float()
        y_rate, y_hat = (training_quantizer if self.training else rounding_quantizer)(y)
        log_scale = self.log_scales(hyper, y_hat).float()
        scale = torch.exp(log_scale.clamp(max=math.log(self.config.scale_max)))
        y_lik = gaussian_likelihood(y_rate, scale.clamp_min(SCALE_MIN))
        coefs_hat = self.reconstruct(y_hat, log_scale) / gain
        return {"coefs_hat": coefs_hat, "likelihoods": [y_lik, z_lik]}

    def aux_loss(self) -> torch.Tensor:
        return self.z_prior.loss()
