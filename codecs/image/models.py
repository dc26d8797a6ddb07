"""Learned image transform codecs built from CompressAI's layers.

Three architectures share one skeleton (analysis transform -> gain -> quantizer ->
entropy model -> inverse gain -> synthesis transform):

* ``factorized``: Ballé et al. 2018 factorized prior (one learned density per channel).
* ``hyperprior``: Minnen et al. 2018 mean-scale hyperprior (without spatial context).
* ``slice``: a channel-slice context model (Minnen & Singh 2020 / ELIC-style uneven
  slices), each slice's mean and scale predicted from the hyperprior and the slices
  decoded before it, plus latent residual prediction for the reconstruction; optionally
  with a checkerboard spatial context inside each slice (He et al. 2021, ELIC's SCCTX).

Every model is variable-rate through *gain units* (Cui et al. 2021): one learned gain
vector per quality level scales the latent before quantization and its inverse scales
it back, so one set of weights serves every quality.  The hyperprior and slice models
accept any real quality between two levels (gains are interpolated geometrically);
the factorized model has one density per level and therefore only integer qualities.

The modules here are the *training-time* models: they return likelihoods for the
rate term.  Everything that feeds the range coder at inference is re-expressed in
exact integer arithmetic by :mod:`ncodec.entropy.fixedpoint`, so only layer types it
supports (Conv2d, ConvTranspose2d, ReLU, LeakyReLU) are used on those paths.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN

# MSE lambdas (on 8-bit scale: loss = lambda * 255^2 * mse + bpp) of CompressAI's qualities 1-6.
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)
SCALE_BOUND = 0.11


@dataclass
class ImageModelConfig:
    """Everything needed to rebuild an image model; stored inside its weights file."""

    arch: str
    N: int = 128
    M: int = 192
    lambdas: tuple = DEFAULT_LAMBDAS
    slices: tuple = ()          # slice model only: channels per slice, summing to M
    hyper_channels: int = 0     # slice model only: width of the shared hyper features
    checkerboard: bool = False  # slice model only: two-pass checkerboard spatial context in every slice
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        d["slices"] = list(self.slices)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ImageModelConfig":
        d = dict(d)
        d["lambdas"] = tuple(d.get("lambdas", DEFAULT_LAMBDAS))
        d["slices"] = tuple(d.get("slices", ()))
        return cls(**d)

    @property
    def levels(self) -> int:
        return len(self.lambdas)


def conv(cin, cout, k=5, s=2):
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def deconv(cin, cout, k=5, s=2):
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """x (3 channels) -> y (M channels) at 1/16 resolution, GDN nonlinearities."""
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis_transform(N: int, M: int) -> nn.Sequential:
    """y_hat (M channels) -> x_hat (3 channels), inverse GDN nonlinearities."""
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
    )


def gdn_inference(gdn: GDN, x: torch.Tensor) -> torch.Tensor:
    """CompressAI's GDN / inverse GDN forward with the normaliser computed in place: the same
    numbers, without three of its four full-size temporaries (1.8x faster at 256x384x128 on CPU).
    Inference only (no autograd)."""
    c = x.shape[1]
    beta = gdn.beta_reparam(gdn.beta)
    gamma = gdn.gamma_reparam(gdn.gamma).reshape(c, c, 1, 1)
    norm = nn.functional.conv2d(x * x, gamma, beta)
    return (norm.sqrt_() if gdn.inverse else norm.rsqrt_()).mul_(x)


SUBPIXEL_MAX_OUT = 16   # transposed convolutions with at most this many outputs run as sub-pixel convolutions


def subpixel_inference(layer: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor | None:
    """``layer(x)`` computed as a stride-1 convolution with s*s times the outputs followed by a pixel
    shuffle (the same sums, another order): 2.4x faster than oneDNN's transposed convolution for
    the 3-channel output layer of a synthesis transform (128 -> 3 channels at 256x384, float32,
    one thread), though slower for wide layers.  None if the layer's geometry has no such form."""
    (k, kw), (st, sw), (p, pw), (op, opw) = layer.kernel_size, layer.stride, layer.padding, layer.output_padding
    if (k, st, p, op) != (kw, sw, pw, opw) or layer.groups != 1 or layer.dilation != (1, 1) or k + op != 2 * p + st:
        return None
    # output row s*i + a takes input row i + d through kernel tap a + p - s*d, for every d with a valid tap
    d_lo, d_hi = -((k - 1 - p) // st), (p + st - 1) // st
    if -d_lo != d_hi:
        return None
    taps = 2 * d_hi + 1
    dev = layer.weight.device
    phase, tap = torch.arange(st, device=dev).view(-1, 1), torch.arange(taps, device=dev).view(1, -1)
    k_index = phase + p - st * (tap + d_lo)                       # (phase, tap) -> kernel tap, k = none
    k_index = torch.where((k_index >= 0) & (k_index < k), k_index, k)
    w = nn.functional.pad(layer.weight, (0, 1, 0, 1))             # (in, out, k+1, k+1), tap k is zero
    kernel = w[:, :, k_index[:, :, None, None], k_index[None, None, :, :]]   # (in, out, a, j, b, i)
    kernel = kernel.permute(1, 2, 4, 0, 3, 5).reshape(-1, layer.in_channels, taps, taps)
    bias = None if layer.bias is None else layer.bias.repeat_interleave(st * st)
    y = nn.functional.conv2d(x, kernel.to(x.dtype), None if bias is None else bias.to(x.dtype), padding=d_hi)
    return nn.functional.pixel_shuffle(y, st)


@torch.no_grad()
def run_inference(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A transform's forward pass for coding: GDN layers of a Sequential through :func:`gdn_inference`,
    narrow transposed convolutions through :func:`subpixel_inference`."""
    for layer in (net if isinstance(net, nn.Sequential) else (net,)):
        if isinstance(layer, GDN):
            x = gdn_inference(layer, x)
        elif isinstance(layer, nn.ConvTranspose2d) and layer.out_channels <= SUBPIXEL_MAX_OUT:
            y = subpixel_inference(layer, x)
            x = layer(x) if y is None else y
        else:
            x = layer(x)
    return x


def hyper_analysis(M: int, N: int) -> nn.Sequential:
    return nn.Sequential(
        conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N),
    )


def hyper_synthesis(N: int, cout: int) -> nn.Sequential:
    """z_hat -> entropy parameters.  Runs in fixed point at inference (see module doc)."""
    mid = (N + cout) // 2
    return nn.Sequential(
        deconv(N, N), nn.LeakyReLU(inplace=True), deconv(N, mid), nn.LeakyReLU(inplace=True),
        conv(mid, cout, 3, 1),
    )


def context_net(cin: int, cout: int) -> nn.Sequential:
    """Slice context: (hyper features, previous slices) -> (mean, scale) of one slice."""
    return nn.Sequential(
        conv(cin, 128, 3, 1), nn.LeakyReLU(inplace=True), conv(128, 96, 3, 1), nn.LeakyReLU(inplace=True),
        conv(96, cout, 3, 1),
    )


def spatial_context_net(s: int) -> nn.Sequential:
    """Checkerboard context of one slice: its decoded anchors (zero elsewhere) -> spatial features."""
    return nn.Sequential(conv(s, 2 * s, 5, 1))


def fuse_net(s: int) -> nn.Sequential:
    """(spatial features, channel-context parameters) -> correction of a slice's non-anchor mean and
    scale.  Its last layer starts at zero, so grafting it onto a trained slice model changes nothing."""
    net = nn.Sequential(conv(4 * s, 3 * s, 1, 1), nn.LeakyReLU(inplace=True), conv(3 * s, 2 * s, 1, 1))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def anchor_mask(h: int, w: int, device=None) -> torch.Tensor:
    """Checkerboard anchors of an h x w latent (True where row + column is even): they are coded
    first, from the channel context alone; the other half is coded with them as spatial context."""
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    return (rows[:, None] + cols[None, :]) % 2 == 0


def lrp_net(cin: int, cout: int) -> nn.Sequential:
    """Latent residual prediction (reconstruction path only, never feeds the coder)."""
    return nn.Sequential(
        conv(cin, 128, 3, 1), nn.GELU(), conv(128, 64, 3, 1), nn.GELU(), conv(64, cout, 3, 1),
    )


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


# A quantizer stands in for rounding the (mean-removed) latent ``v``: it returns the values the
# rate term sees and the values the synthesis sees.  Training uses additive noise for the rate
# and straight-through rounding for synthesis; evaluation rounds both; encoder-side refinement
# (:mod:`ncodec.image.refine`) passes its own annealed soft rounding.
Quantizer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def training_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return v + torch.empty_like(v).uniform_(-0.5, 0.5), ste_round(v)


def rounding_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.round(v)
    return r, r


def noise_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive noise for both (how the hyper-latent z is trained, as in CompressAI)."""
    n = v + torch.empty_like(v).uniform_(-0.5, 0.5)
    return n, n


def hard_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through rounding for both: the values the coder sees, with gradients for the means
    and scales that predict them (the "hard" fine-tuning phase of Guo et al. 2021, soft-then-hard)."""
    r = ste_round(v)
    return r, r


# Buffers that are constructor constants, never read from a weights file: the shipped files carry
# the hyper-prior's 1e-9 likelihood bound as 0, which let soft-rounded latents reach zero
# likelihood (an infinite rate, NaN in encoder-side refinement).
CONSTANT_BUFFERS = ("likelihood_lower_bound.bound",)


def bottleneck_likelihood(bottleneck: EntropyBottleneck, values: torch.Tensor) -> torch.Tensor:
    """Likelihoods of given (B, C, H, W) values under a CompressAI ``EntropyBottleneck``,
    differentiable in the values (its own forward rounds without a gradient outside training)."""
    c = values.shape[1]
    lik, _, _ = bottleneck._likelihood(values.transpose(0, 1).reshape(c, 1, -1))
    if bottleneck.use_likelihood_bound:
        lik = bottleneck.likelihood_lower_bound(lik)
    return lik.reshape(c, values.shape[0], *values.shape[2:]).transpose(0, 1)


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(v - 0.5 < Y < v + 0.5) for a zero-mean Gaussian, computed in float32."""
    values = values.float().abs()
    scales = scales.float().clamp_min(SCALE_BOUND)
    c = 1.0 / math.sqrt(2.0)
    upper = torch.special.erfc(c * (values - 0.5) / scales)
    lower = torch.special.erfc(c * (values + 0.5) / scales)
    return (0.5 * (upper - lower)).clamp_min(1e-9)


class ImageModel(nn.Module):
    """Shared skeleton: transforms, gain units and the rate/distortion bookkeeping."""

    def __init__(self, config: ImageModelConfig):
        super().__init__()
        self.config = config
        M = config.M
        self.g_a = analysis_transform(config.N, M)
        self.g_s = synthesis_transform(config.N, M)
        # Quantization step ~ lambda^-1/2, so gains start proportional to sqrt(lambda).
        init = 0.5 * torch.tensor(config.lambdas).log()
        self.log_gain = nn.Parameter((init - init.mean())[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-self.log_gain.detach().clone())

    # -- gains -------------------------------------------------------------------------
    def gains(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample gain and inverse gain, shape (B, M, 1, 1); quality in [0, L-1]."""
        q = quality.clamp(0, self.config.levels - 1).float()
        lo = q.floor().long().clamp(max=self.config.levels - 2) if self.config.levels > 1 else q.long() * 0
        t = (q - lo.float())[:, None]
        hi = (lo + 1).clamp(max=self.config.levels - 1)

        def interp(table):
            return torch.exp(table[lo] * (1 - t) + table[hi] * t)[:, :, None, None]

        return interp(self.log_gain), interp(self.log_inv_gain)

    def lambdas_for(self, quality: torch.Tensor) -> torch.Tensor:
        lam = torch.tensor(self.config.lambdas, device=quality.device).log()
        q = quality.clamp(0, self.config.levels - 1)
        lo = q.floor().long().clamp(max=max(self.config.levels - 2, 0))
        hi = (lo + 1).clamp(max=self.config.levels - 1)
        t = q - lo.float()
        return torch.exp(lam[lo] * (1 - t) + lam[hi] * t)

    def quantizer(self, quantizer: Quantizer | None) -> Quantizer:
        """The quantizer to use: the given one, else the training or the rounding one."""
        return quantizer or (training_quantizer if self.training else rounding_quantizer)

    def hyper_path(self, y: torch.Tensor, quantizer: Quantizer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z likelihoods and the hyper-synthesis output (float32, outside autocast).  Training
        feeds the noisy z to the hyper synthesis (as CompressAI does); a given quantizer
        replaces the rounding of z too."""
        quantizer = quantizer or (noise_quantizer if self.training else rounding_quantizer)
        z = self.h_a(y)
        with torch.autocast(device_type=y.device.type, enabled=False):
            medians = self.z_prior._get_medians().detach()
            z_rate, z_hat = quantizer(z.float() - medians)
            return bottleneck_likelihood(self.z_prior, z_rate + medians), self.h_s(z_hat + medians)

    def aux_loss(self) -> torch.Tensor:
        return sum(m.loss() for m in self.modules() if isinstance(m, EntropyBottleneck))

    def forward(self, x: torch.Tensor, quality: torch.Tensor, quantizer: Quantizer | None = None) -> dict:
        """Reconstruction and likelihoods of a batch at per-sample qualities (0-based); ``quantizer``
        replaces the default one for the latent and the hyper-latent alike."""
        gain, inv_gain = self.gains(quality)
        return self.latent_forward(self.g_a(x).float() * gain, inv_gain, quality, quantizer)

    def latent_forward(self, y: torch.Tensor, inv_gain: torch.Tensor, quality: torch.Tensor,
                       quantizer: Quantizer | None = None) -> dict:
        """Everything after the analysis transform: quantize the (gain-scaled) latent ``y``,
        return ``x_hat`` and the likelihoods of the rate term."""
        raise NotImplementedError


class FactorizedModel(ImageModel):
    """Ballé 2018 factorized prior; one entropy bottleneck per quality level."""

    def __init__(self, config: ImageModelConfig):
        super().__init__(config)
        self.priors = nn.ModuleList(EntropyBottleneck(config.M) for _ in range(config.levels))

    def latent_forward(self, y, inv_gain, quality, quantizer=None):
        quantizer = self.quantizer(quantizer)
        level = quality.round().long()
        y_hat = torch.empty_like(y)
        likelihoods = torch.empty_like(y)
        for lv in level.unique().tolist():
            sel = level == lv
            medians = self.priors[lv]._get_medians().detach()
            v_rate, v_hat = quantizer(y[sel] - medians)
            with torch.autocast(device_type=y.device.type, enabled=False):
                likelihoods[sel] = bottleneck_likelihood(self.priors[lv], v_rate + medians)
            y_hat[sel] = v_hat + medians
        x_hat = self.g_s(y_hat * inv_gain)
        return {"x_hat": x_hat, "likelihoods": [likelihoods]}


class HyperpriorModel(ImageModel):
    """Minnen 2018 mean-scale hyperprior (no autoregressive context)."""

    def __init__(self, config: ImageModelConfig):
        super().__init__(config)
        N, M = config.N, config.M
        self.h_a = hyper_analysis(M, N)
        self.h_s = hyper_synthesis(N, 2 * M)
        self.z_prior = EntropyBottleneck(N)

    def latent_forward(self, y, inv_gain, quality, quantizer=None):
        z_lik, params = self.hyper_path(y, quantizer)
        means, scales = params.chunk(2, dim=1)
        y_rate, y_hat = self.quantizer(quantizer)(y - means)
        y_lik = gaussian_likelihood(y_rate, scales)
        x_hat = self.g_s((y_hat + means) * inv_gain)
        return {"x_hat": x_hat, "likelihoods": [y_lik, z_lik]}


class SliceModel(ImageModel):
    """Channel-slice context model with uneven slices and latent residual prediction; with
    ``config.checkerboard`` each slice is coded in two passes (He et al. 2021, as ELIC's SCCTX):
    the anchors from the channel context, then the rest with the anchors as spatial context too."""

    def __init__(self, config: ImageModelConfig):
        super().__init__(config)
        N, M, H = config.N, config.M, config.hyper_channels
        assert sum(config.slices) == M, "slice sizes must add up to M"
        self.h_a = hyper_analysis(M, N)
        self.h_s = hyper_synthesis(N, H)
        self.z_prior = EntropyBottleneck(N)
        offsets = [0]
        for s in config.slices:
            offsets.append(offsets[-1] + s)
        self.offsets = offsets
        self.context = nn.ModuleList(context_net(H + offsets[i], 2 * s) for i, s in enumerate(config.slices))
        self.lrp = nn.ModuleList(lrp_net(H + offsets[i + 1], s) for i, s in enumerate(config.slices))
        if config.checkerboard:
            self.spatial = nn.ModuleList(spatial_context_net(s) for s in config.slices)
            self.fuse = nn.ModuleList(fuse_net(s) for s in config.slices)

    def _code_slice(self, i: int, y_i: torch.Tensor, params: torch.Tensor, quantizer: Quantizer):
        """Likelihoods and quantized values of slice ``i`` given its channel-context parameters."""
        means, scales = params.chunk(2, dim=1)
        y_rate, y_hat = quantizer(y_i - means)
        y_hat = y_hat + means
        if self.config.checkerboard:
            anchors = anchor_mask(*y_i.shape[2:], device=y_i.device)
            spatial = self.spatial[i](torch.where(anchors, y_hat, 0.0))
            params = params + self.fuse[i](torch.cat([spatial, params], dim=1)) * ~anchors
            means2, scales = params.chunk(2, dim=1)
            y_rate2, y_hat2 = quantizer(y_i - means2)
            y_rate = torch.where(anchors, y_rate, y_rate2)
            y_hat = torch.where(anchors, y_hat, y_hat2 + means2)
        return gaussian_likelihood(y_rate, scales), y_hat

    def latent_forward(self, y, inv_gain, quality, quantizer=None):
        z_lik, hyper = self.hyper_path(y, quantizer)
        quantizer = self.quantizer(quantizer)
        coded, recon, liks = [], [], []
        for i, s in enumerate(self.config.slices):
            y_i = y[:, self.offsets[i]:self.offsets[i + 1]]
            with torch.autocast(device_type=y.device.type, enabled=False):
                params = self.context[i](torch.cat([hyper, *coded], dim=1))
                lik, y_hat_i = self._code_slice(i, y_i.float(), params, quantizer)
            liks.append(lik)
            coded.append(y_hat_i)
            residual = self.lrp[i](torch.cat([hyper, *coded], dim=1)).float()
            recon.append(y_hat_i + 0.5 * torch.tanh(residual))
        x_hat = self.g_s(torch.cat(recon, dim=1) * inv_gain)
        return {"x_hat": x_hat, "likelihoods": [torch.cat(liks, dim=1), z_lik]}


ARCHITECTURES = {"factorized": FactorizedModel, "hyperprior": HyperpriorModel, "slice": SliceModel}

PRESETS = {
    "factorized": ImageModelConfig(arch="factorized", N=128, M=192),
    "hyperprior": ImageModelConfig(arch="hyperprior", N=128, M=192),
    "slice": ImageModelConfig(arch="slice", N=192, M=320, slices=(16, 16, 32, 64, 192), hyper_channels=160),
}


def build_model(config: ImageModelConfig) -> ImageModel:
    """Instantiate the training-time model for a config."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown image architecture {config.arch!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[config.arch](config)
