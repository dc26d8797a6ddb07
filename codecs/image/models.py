"""Learned image transform codecs built from CompressAI's layers.

Three architectures share one skeleton (analysis transform -> gain -> quantizer ->
entropy model -> inverse gain -> synthesis transform):

* ``factorized``: Ballé et al. 2018 factorized prior (one learned density per channel).
* ``hyperprior``: Minnen et al. 2018 mean-scale hyperprior (without spatial context).
* ``walloc``: WaLLoC (Jacobellis & Yadwadkar 2024): a wavelet packet transform, a *linear*
  encoder (one 1x1 convolution from the packet bands to a few latent channels), the factorized
  prior, and a heavier convolutional decoder back to the bands before the inverse transform.  Its
  latent is small and of fixed shape (1/8 of the resolution, 32 channels: 6x fewer numbers than
  the RGB values), so other models can learn on it without decoding (:mod:`ncodec.walloc`).
* ``slice``: a channel-slice context model (Minnen & Singh 2020 / ELIC-style uneven
  slices), each slice's mean and scale predicted from the hyperprior and the slices
  decoded before it, plus latent residual prediction for the reconstruction; optionally
  with a checkerboard spatial context inside each slice (He et al. 2021, ELIC's SCCTX), and
  with auxiliary slices that depend on a salient core alone (ISCS, ``core_slices``).

Every model is variable-rate through *gain units* (Cui et al. 2021): one learned gain
vector per quality level scales the latent before quantization and its inverse scales
it back, so one set of weights serves every quality.  The hyperprior and slice models
accept any real quality between two levels (gains are interpolated geometrically);
the factorized model has one density per level and therefore only integer qualities.

Each architecture's model (an ``nn.Module`` whose forward returns the likelihoods of the
rate term, for training and evaluation) is followed by its *latent codec*, which codes the
same latent exactly (``compress`` / ``decompress``, in the composable style of CompressAI's
``latent_codecs``): every number that reaches the range coder comes from exact fixed-point
networks (:class:`ncodec.entropy.FixedPointNet`), so only layer types they support (Conv2d,
ConvTranspose2d, ReLU, LeakyReLU) are used on those paths, and a stream encoded on one machine
or device decodes bit-exactly on any other.  The fixed-point networks run on the codec's device
(float64 holding integers is exact on a GPU too: any summation order gives the same integers);
the range coder and its table lookups run on the CPU; the reconstruction refinements (latent
residual prediction) run in float on the transform device.

CompressAI is imported only to build trainable models (:func:`build_model`).  A model built with
``decoder_only`` holds what decoding needs and nothing from CompressAI: the synthesis transform with
:class:`InferenceGDN` layers, the gains, the entropy networks and latent residual prediction; no
analysis side, no trainable densities (the coder's tables are stored with the weights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..entropy import FactorizedPrior, FixedPointNet, GaussianConditional, SymbolDecoder, SymbolEncoder, from_fixed
from ..entropy.fixedpoint import ACT_FRAC
from ..latent.wavelets import DEFAULT_WAVELET, PacketLayer, WaveletPacket
from ..latent import (HyperLatentCodec, Quantizer, bottleneck_likelihood, gaussian_likelihood, hyper_forward,
                      interpolate_levels, noise_quantizer, rounding_quantizer, ste_round, training_quantizer)

# MSE lambdas (on 8-bit scale: loss = lambda * 255^2 * mse + bpp) of CompressAI's qualities 1-6.
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)


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
    core_slices: int = 0        # slice model only: slices after the first core_slices see the core alone (0: a chain)
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

    @property
    def dims(self) -> int:
        """Dimensions of the signal the model codes: 2 (images), or 1 (the audio WaLLoC model)."""
        return int(self.extra.get("dims", 2))

    @property
    def per_level_priors(self) -> bool:
        """True for models with one factorized density per quality level (integer qualities only)."""
        return self.arch in ("factorized", "walloc")


def conv(cin, cout, k=5, s=2):
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def deconv(cin, cout, k=5, s=2):
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)


def _compressai():
    """CompressAI's GDN and EntropyBottleneck, imported when a trainable model is built."""
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import GDN

    return GDN, EntropyBottleneck


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """x (3 channels) -> y (M channels) at 1/16 resolution, GDN nonlinearities."""
    GDN = _compressai()[0]
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis_transform(N: int, M: int, gdn=None) -> nn.Sequential:
    """y_hat (M channels) -> x_hat (3 channels), inverse GDN nonlinearities (``gdn``: the layer
    class, CompressAI's GDN unless given)."""
    GDN = gdn or _compressai()[0]
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
    )


def _normalise(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool) -> torch.Tensor:
    """``x * rsqrt(beta + gamma * x^2)`` (``sqrt`` if ``inverse``) as CompressAI's GDN computes it, the
    normaliser in place: the same numbers, without three of its four full-size temporaries (1.8x
    faster at 256x384x128 on CPU).  No autograd."""
    c = x.shape[1]
    norm = nn.functional.conv2d(x * x, gamma.reshape(c, c, 1, 1), beta)
    return (norm.sqrt_() if inverse else norm.rsqrt_()).mul_(x)


def gdn_inference(gdn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A CompressAI GDN / inverse GDN layer's forward through :func:`_normalise`."""
    return _normalise(x, gdn.beta_reparam(gdn.beta), gdn.gamma_reparam(gdn.gamma), gdn.inverse)


class InferenceGDN(nn.Module):
    """CompressAI's GDN / inverse GDN for decoding (inference only), without CompressAI: ``beta`` and
    ``gamma`` are buffers holding the reparametrised values that CompressAI's layer computes on each
    call.  It loads CompressAI's state dict (``beta``, ``gamma`` and their reparametrisation bounds
    and pedestals), applying the reparametrisation once as CompressAI does:
    ``max(v, bound)^2 - pedestal``."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.register_buffer("beta", torch.empty(channels))
        self.register_buffer("gamma", torch.empty(channels, channels))
        self.register_load_state_dict_pre_hook(self._reparametrise)

    @staticmethod
    def _reparametrise(module, state: dict, prefix: str, *args) -> None:
        for name in ("beta", "gamma"):
            bound = state.pop(f"{prefix}{name}_reparam.lower_bound.bound", None)
            pedestal = state.pop(f"{prefix}{name}_reparam.pedestal", None)
            if bound is not None and pedestal is not None and prefix + name in state:
                state[prefix + name] = torch.max(state[prefix + name], bound) ** 2 - pedestal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output, computed in place (no gradient reaches ``x``)."""
        return _normalise(x, self.beta, self.gamma, self.inverse)


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
    """A transform's forward pass for coding: CompressAI's GDN layers through :func:`gdn_inference`,
    narrow transposed convolutions through :func:`subpixel_inference`."""
    for layer in (net if isinstance(net, nn.Sequential) else (net,)):
        if hasattr(layer, "beta_reparam"):        # CompressAI's GDN (trainable models)
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


_ONE = float(1 << ACT_FRAC)


def _symbols_to_fixed(symbols: np.ndarray, means_fixed: torch.Tensor) -> torch.Tensor:
    """Decoded symbols + the exact fixed-point means -> the quantized latent in fixed point (in place:
    large latents)."""
    return torch.from_numpy(symbols).to(means_fixed.device, torch.float64).mul_(_ONE).add_(means_fixed)


def _residual_symbols(y: torch.Tensor, means_fixed: torch.Tensor) -> np.ndarray:
    """Encoder side: round(y - mean) with the exact fixed-point mean (in place: large latents)."""
    d = y.detach().to(means_fixed.device, torch.float64, copy=True)
    return d.sub_(means_fixed, alpha=1 / _ONE).round_().long().cpu().numpy()


def _pointwise_at(net: FixedPointNet, x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """A pointwise (1x1 convolutions) fixed-point network's output at the positions of the (H, W)
    mask ``where`` alone, shape (N, C, count): the same integers as at those positions of ``net(x)``."""
    n, c, h, _ = x.shape
    picked = x[:, :, where]
    return net(picked.view(n, c, h if picked.shape[2] % h == 0 else 1, -1)).flatten(2)


def _z_shape(hyper: HyperLatentCodec, y_shape: tuple) -> tuple:
    """The hyper-latent's shape: 1/4 of the latent's resolution."""
    n, _, h, w = y_shape
    return n, hyper.channels, h // 4, w // 4


class ImageModel(nn.Module):
    """Shared skeleton: transforms, gain units and the rate/distortion bookkeeping.  With
    ``decoder_only`` (see module doc) the encoder side (``g_a``, ``h_a``) and the trainable densities
    are None."""

    def __init__(self, config: ImageModelConfig, decoder_only: bool = False):
        super().__init__()
        self.config = config
        M = config.M
        self.g_a = None if decoder_only else self.build_analysis()
        self.g_s = self.build_synthesis(decoder_only)
        # Quantization step ~ lambda^-1/2, so gains start proportional to sqrt(lambda).  Computed on
        # the CPU even when the model is built on the meta device (whose log and mean load torch._dynamo).
        init = 0.5 * torch.tensor(config.lambdas, device="cpu").log()
        self.log_gain = nn.Parameter((init - init.mean())[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-self.log_gain.detach().clone())

    stride = 16                  # pixels per latent position along each axis
    tiling = (48, 6)             # latent positions per coding tile, and of context around it

    def build_analysis(self) -> nn.Module:
        return analysis_transform(self.config.N, self.config.M)

    def build_synthesis(self, decoder_only: bool) -> nn.Module:
        return synthesis_transform(self.config.N, self.config.M, InferenceGDN if decoder_only else None)

    def gains(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample gain and inverse gain, shape (B, M, 1, 1); quality in [0, L-1]."""
        return (interpolate_levels(self.log_gain, quality)[:, :, None, None],
                interpolate_levels(self.log_inv_gain, quality)[:, :, None, None])

    def lambdas_for(self, quality: torch.Tensor) -> torch.Tensor:
        """The rate-distortion weight of each (0-based, real) quality, interpolated geometrically."""
        return interpolate_levels(torch.tensor(self.config.lambdas, device=quality.device).log(), quality)

    def quantizer(self, quantizer: Quantizer | None) -> Quantizer:
        """The quantizer to use: the given one, else the training or the rounding one."""
        return quantizer or (training_quantizer if self.training else rounding_quantizer)

    def hyper_path(self, y: torch.Tensor, quantizer: Quantizer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z likelihoods and the hyper-synthesis output (float32, outside autocast).  Training
        feeds the noisy z to the hyper synthesis (as CompressAI does); a given quantizer
        replaces the rounding of z too."""
        quantizer = quantizer or (noise_quantizer if self.training else rounding_quantizer)
        return hyper_forward(self.h_a, self.h_s, self.z_prior, y, quantizer)

    def aux_loss(self) -> torch.Tensor:
        EntropyBottleneck = _compressai()[1]
        return sum(m.loss() for m in self.modules() if isinstance(m, EntropyBottleneck))

    def forward(self, x: torch.Tensor, quality: torch.Tensor, quantizer: Quantizer | None = None) -> dict:
        """Reconstruction and likelihoods of a batch at per-sample qualities (0-based); ``quantizer``
        replaces the default one for the latent and the hyper-latent alike."""
        gain, inv_gain = self.gains(quality)
        return self.latent_forward(self.g_a(x).float() * gain, inv_gain, quality, quantizer)

    def latent_forward(self, y: torch.Tensor, inv_gain: torch.Tensor, quality: torch.Tensor,
                       quantizer: Quantizer | None = None, hyper_quantizer: Quantizer | None = None) -> dict:
        """Everything after the analysis transform: quantize the (gain-scaled) latent ``y``,
        return ``x_hat`` and the likelihoods of the rate term.  ``hyper_quantizer`` replaces
        ``quantizer`` for the hyper-latent (models that have one)."""
        raise NotImplementedError


class FactorizedModel(ImageModel):
    """Ballé 2018 factorized prior; one entropy bottleneck per quality level."""

    def __init__(self, config: ImageModelConfig, decoder_only: bool = False):
        super().__init__(config, decoder_only)
        self.priors = None if decoder_only else \
            nn.ModuleList(_compressai()[1](config.M) for _ in range(config.levels))

    def latent_forward(self, y, inv_gain, quality, quantizer=None, hyper_quantizer=None):
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


class ResidualBlock(nn.Module):
    """Two convolutions (``kernel``: 3 or (1, 3)) with a GELU between them, added to the input."""

    def __init__(self, channels: int, kernel=3):
        super().__init__()
        pad = tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else kernel // 2
        self.body = nn.Sequential(nn.Conv2d(channels, channels, kernel, padding=pad), nn.GELU(),
                                  nn.Conv2d(channels, channels, kernel, padding=pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LinearPlus(nn.Module):
    """A linear map (a 1x1 convolution) plus a network's correction of it."""

    def __init__(self, linear: nn.Conv2d, body: nn.Sequential):
        super().__init__()
        self.linear, self.body = linear, body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.body(x)


class WallocModel(FactorizedModel):
    """WaLLoC (see module doc), for images and for audio: ``config.extra`` holds ``dims`` (2: images;
    1: audio, held as (N, C, 1, samples)), ``channels`` (of the signal: 3 for RGB, 1 for audio, whose
    channels are coded one by one), ``wavelet`` and ``wavelet_levels`` (the packet transform),
    ``blocks`` (the decoder's residual blocks, ``N`` wide) and, for audio, ``sample_rate``.  The decoder
    is a linear map back to the bands plus a convolutional correction; :meth:`init_from_data` starts
    training from principal components, the correction at zero."""

    def packet(self) -> WaveletPacket:
        extra = self.config.extra
        return WaveletPacket(self.config.dims, int(extra.get("wavelet_levels", 3)),
                             extra.get("wavelet", DEFAULT_WAVELET))

    @property
    def stride(self) -> int:
        return self.g_s[-1].packet.stride        # the inverse packets, the synthesis's last layer

    @property
    def tiling(self) -> tuple:
        """Coding tiles of 768x768 pixels with 128 of context on each side; audio: 2**16 samples with
        1,024 on each side."""
        if self.config.dims == 1:
            return (1, (1 << 16) // self.stride), (0, 1024 // self.stride)
        return 768 // self.stride, 128 // self.stride

    @property
    def signal_channels(self) -> int:
        return int(self.config.extra.get("channels", 3))

    def build_analysis(self) -> nn.Module:
        packet = self.packet()
        return nn.Sequential(PacketLayer(packet), nn.Conv2d(packet.bands(self.signal_channels), self.config.M, 1))

    def build_synthesis(self, decoder_only: bool) -> nn.Module:
        N, M, packet = self.config.N, self.config.M, self.packet()
        bands = packet.bands(self.signal_channels)
        kernel = 3 if packet.dims == 2 else (1, 3)
        pad = 1 if packet.dims == 2 else (0, 1)
        blocks = [ResidualBlock(N, kernel) for _ in range(int(self.config.extra.get("blocks", 3)))]
        body = nn.Sequential(nn.Conv2d(M, N, kernel, padding=pad), nn.GELU(), *blocks, nn.Conv2d(N, bands, 1))
        return nn.Sequential(LinearPlus(nn.Conv2d(M, bands, 1), body), PacketLayer(packet, inverse=True))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Start from PCA: the encoder projects the packet bands of the batch ``x`` on their ``M``
        principal components, the decoder's linear map projects back, its correction is zero."""
        bands = self.g_a[0](x.float())
        z = bands.transpose(0, 1).flatten(1).T.double()
        mean = z.mean(0)
        basis = torch.linalg.svd(z - mean, full_matrices=False)[2][:self.config.M]     # (M, bands)
        encoder, decoder = self.g_a[1], self.g_s[0]
        encoder.weight.copy_(basis[:, :, None, None])
        encoder.bias.copy_(-basis @ mean)
        decoder.linear.weight.copy_(basis.T[:, :, None, None])
        decoder.linear.bias.copy_(mean)
        nn.init.zeros_(decoder.body[-1].weight)
        nn.init.zeros_(decoder.body[-1].bias)


class FactorizedLatentCodec:
    """Exact coding of :class:`FactorizedModel`'s latent: y with the per-channel factorized prior
    of its quality level (one prior per level), on the CPU."""

    def __init__(self, priors: list[FactorizedPrior]):
        self.priors = priors

    def to(self, device) -> "FactorizedLatentCodec":
        return self

    def compress(self, y: torch.Tensor, level: int) -> tuple[dict, float]:
        """Sections of a gain-scaled latent and its ideal bit count."""
        prior = self.priors[level]
        sym = prior.quantize(y.cpu())
        enc = SymbolEncoder()
        bits = prior.encode(enc, sym)
        return {"y": enc.finish()}, bits

    def decode_quantized(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        """The exact quantized latent (fixed point), before any float refinement."""
        prior = self.priors[level]
        return prior.dequantize_fixed(prior.decode(SymbolDecoder(sections["y"]), shape))

    def decompress(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        return from_fixed(self.decode_quantized(sections, shape, level))


class HyperpriorModel(ImageModel):
    """Minnen 2018 mean-scale hyperprior (no autoregressive context)."""

    def __init__(self, config: ImageModelConfig, decoder_only: bool = False):
        super().__init__(config, decoder_only)
        N, M = config.N, config.M
        self.h_a = None if decoder_only else hyper_analysis(M, N)
        self.h_s = hyper_synthesis(N, 2 * M)
        self.z_prior = None if decoder_only else _compressai()[1](N)

    def latent_forward(self, y, inv_gain, quality, quantizer=None, hyper_quantizer=None):
        z_lik, params = self.hyper_path(y, hyper_quantizer or quantizer)
        means, scales = params.chunk(2, dim=1)
        y_rate, y_hat = self.quantizer(quantizer)(y - means)
        y_lik = gaussian_likelihood(y_rate, scales)
        x_hat = self.g_s((y_hat + means) * inv_gain)
        return {"x_hat": x_hat, "likelihoods": [y_lik, z_lik]}


class HyperpriorLatentCodec:
    """Exact coding of :class:`HyperpriorModel`'s latent: z with the factorized prior, y with
    Gaussians whose mean and scale come from the fixed-point hyper synthesis.  ``layout`` names the
    order of the hyper-synthesis outputs ("means,scales", "scales,means" or "scales"); ``abs_input``
    feeds |y| to the hyper analysis (Ballé 2018's scale hyperprior)."""

    def __init__(self, h_a, h_s, z_prior: FactorizedPrior, layout: str = "means,scales", abs_input: bool = False):
        self.hyper = HyperLatentCodec((lambda y: h_a(y.abs())) if abs_input else h_a, h_s, z_prior)
        self.gaussian = GaussianConditional()
        self.layout = layout

    def to(self, device) -> "HyperpriorLatentCodec":
        self.hyper.to(device)
        return self

    def _params(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-point means and scales from the hyper synthesis's output."""
        if self.layout == "scales":
            return torch.zeros_like(out), out
        a, b = out.chunk(2, dim=1)
        return (a, b) if self.layout == "means,scales" else (b, a)

    def compress(self, y: torch.Tensor, level: int = 0) -> tuple[dict, float]:
        """Sections of a gain-scaled latent and its ideal bit count."""
        ez, ey = SymbolEncoder(), SymbolEncoder()
        out, bits = self.hyper.compress(y, ez)
        means, scales = self._params(out)
        y_sym = _residual_symbols(y, means)
        del means
        bits += self.gaussian.encode(ey, y_sym, scales)
        return {"z": ez.finish(), "y": ey.finish()}, bits

    def decode_quantized(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        """The exact quantized latent (fixed point)."""
        means, scales = self._params(self.hyper.decompress(SymbolDecoder(sections["z"]), _z_shape(self.hyper, shape)))
        return _symbols_to_fixed(self.gaussian.decode(SymbolDecoder(sections["y"]), scales), means)

    def decompress(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        return from_fixed(self.decode_quantized(sections, shape, level))


def context_slices(config: ImageModelConfig) -> list[int]:
    """How many slices each slice's context network reads besides the hyper features: every slice
    before it, or with ``core_slices`` K > 0 the first K alone for the slices after them, which then
    depend on nothing but the core and decode in parallel (ISCS's salient-core and auxiliary groups,
    with the latent channels in saliency order: :mod:`ncodec.image.saliency`).  ValueError for a
    ``core_slices`` that leaves no slice after the core."""
    n, core = len(config.slices), config.core_slices
    if not (isinstance(core, int) and 0 <= core < n):
        raise ValueError(f"core_slices must be 0 to {n - 1}, got {core!r}")
    return list(range(n)) if core == 0 else list(range(core)) + [core] * (n - core)


class SliceModel(ImageModel):
    """Channel-slice context model with uneven slices and latent residual prediction; with
    ``config.checkerboard`` each slice is coded in two passes (He et al. 2021, as ELIC's SCCTX):
    the anchors from the channel context, then the rest with the anchors as spatial context too;
    with ``config.core_slices`` the slices after the core see the core alone (:func:`context_slices`)."""

    def __init__(self, config: ImageModelConfig, decoder_only: bool = False):
        super().__init__(config, decoder_only)
        N, M, H = config.N, config.M, config.hyper_channels
        assert sum(config.slices) == M, "slice sizes must add up to M"
        self.h_a = None if decoder_only else hyper_analysis(M, N)
        self.h_s = hyper_synthesis(N, H)
        self.z_prior = None if decoder_only else _compressai()[1](N)
        offsets = [0]
        for s in config.slices:
            offsets.append(offsets[-1] + s)
        self.offsets = offsets
        self.context_slices = context_slices(config)
        self.context = nn.ModuleList(context_net(H + offsets[k], 2 * s)
                                     for k, s in zip(self.context_slices, config.slices))
        self.lrp = nn.ModuleList(lrp_net(H + offsets[i + 1], s) for i, s in enumerate(config.slices))
        if config.checkerboard:
            self.spatial = nn.ModuleList(spatial_context_net(s) for s in config.slices)
            self.fuse = nn.ModuleList(fuse_net(s) for s in config.slices)

    def _code_slice(self, i: int, y_i: torch.Tensor, params: torch.Tensor, quantizer: Quantizer):
        """Likelihoods, synthesis values and coded values of slice ``i`` given its channel-context
        parameters.  The context networks see the coded values (rounded, straight-through gradient)
        whatever relaxation ``quantizer`` gives the rate and the synthesis, as the decoder does."""
        means, scales = params.chunk(2, dim=1)
        y_rate, y_hat = quantizer(y_i - means)
        y_hat = y_hat + means
        y_coded = ste_round(y_i - means) + means
        if self.config.checkerboard:
            anchors = anchor_mask(*y_i.shape[2:], device=y_i.device)
            spatial = self.spatial[i](torch.where(anchors, y_coded, 0.0))
            params = params + self.fuse[i](torch.cat([spatial, params], dim=1)) * ~anchors
            means2, scales = params.chunk(2, dim=1)
            y_rate2, y_hat2 = quantizer(y_i - means2)
            y_rate = torch.where(anchors, y_rate, y_rate2)
            y_hat = torch.where(anchors, y_hat, y_hat2 + means2)
            y_coded = torch.where(anchors, y_coded, ste_round(y_i - means2) + means2)
        return gaussian_likelihood(y_rate, scales), y_hat, y_coded

    def latent_forward(self, y, inv_gain, quality, quantizer=None, hyper_quantizer=None):
        z_lik, hyper = self.hyper_path(y, hyper_quantizer or quantizer)
        quantizer = self.quantizer(quantizer)
        coded, recon, liks = [], [], []
        for i, s in enumerate(self.config.slices):
            y_i = y[:, self.offsets[i]:self.offsets[i + 1]]
            with torch.autocast(device_type=y.device.type, enabled=False):
                params = self.context[i](torch.cat([hyper, *coded[:self.context_slices[i]]], dim=1))
                lik, y_hat_i, y_coded_i = self._code_slice(i, y_i.float(), params, quantizer)
            liks.append(lik)
            coded.append(y_coded_i)
            residual = self.lrp[i](torch.cat([hyper, *coded], dim=1)).float()
            recon.append(y_hat_i + 0.5 * torch.tanh(residual))
        x_hat = self.g_s(torch.cat(recon, dim=1) * inv_gain)
        return {"x_hat": x_hat, "likelihoods": [torch.cat(liks, dim=1), z_lik]}


class SliceLatentCodec:
    """Exact coding of :class:`SliceModel`'s latent: slice i's mean and scale come (in fixed point)
    from the hyper features and the slices before it; with a checkerboard context each slice is coded
    in two passes, its anchors first and then the other positions with the decoded anchors as spatial
    context.  Latent residual prediction refines the reconstruction in float afterwards."""

    def __init__(self, model: SliceModel, z_prior: FactorizedPrior):
        self.hyper = HyperLatentCodec(model.h_a, model.h_s, z_prior)
        self.context = [FixedPointNet(net) for net in model.context]
        self.checkerboard = model.config.checkerboard
        if self.checkerboard:
            assert all(m.kernel_size == (1, 1) for net in model.fuse for m in net if isinstance(m, nn.Conv2d)), \
                "the fusion networks must be pointwise (see _pointwise_at)"
            self.spatial = [FixedPointNet(net) for net in model.spatial]
            self.fuse = [FixedPointNet(net) for net in model.fuse]
        self.lrp = model.lrp
        self.offsets = model.offsets
        self.context_slices = model.context_slices
        self.gaussian = GaussianConditional()

    def to(self, device) -> "SliceLatentCodec":
        self.hyper.to(device)
        return self

    def _context_buffer(self, hyper: torch.Tensor) -> tuple[torch.Tensor, int]:
        """One fixed-point tensor holding the hyper features and then every slice as it is coded, and
        the hyper features' channel count: slice i's context network reads a leading channel range
        of it (a view), so the growing context is never concatenated into copies (large images)."""
        n, c, h, w = hyper.shape
        buf = hyper.new_empty((n, c + self.offsets[-1], h, w))
        buf[:, :c] = hyper
        return buf, c

    def _slice_channels(self, c: int) -> list[tuple[int, int]]:
        """Each slice's channel range in a context buffer whose hyper features take ``c`` channels."""
        return [(c + lo, c + hi) for lo, hi in zip(self.offsets[:-1], self.offsets[1:])]

    def _refine(self, buf: torch.Tensor, c: int) -> torch.Tensor:
        """Latent residual prediction over a decoded context buffer -> the float latent."""
        feats = from_fixed(buf)
        out = []
        for lrp, (lo, hi) in zip(self.lrp, self._slice_channels(c)):
            out.append(feats[:, lo:hi] + 0.5 * torch.tanh(lrp(feats[:, :hi]).float()))
        return torch.cat(out, dim=1)

    def _fill_slices(self, buf: torch.Tensor, c: int, code) -> None:
        """Fill the context buffer slice by slice, as :meth:`SliceModel.latent_forward` computes it.
        ``code(i, means, scales, where)`` codes (encoder) or decodes (decoder) slice ``i``'s symbols at
        the positions of the (H, W) mask ``where`` (None: all) in that order, and returns the slice's
        symbols (other positions: anything)."""
        anchors = anchor_mask(*buf.shape[2:], device=buf.device) if self.checkerboard else None
        for i, (ctx, (lo, hi)) in enumerate(zip(self.context, self._slice_channels(c))):
            params = ctx(buf[:, :c + self.offsets[self.context_slices[i]]])
            means, scales = params.chunk(2, dim=1)
            if anchors is None:
                buf[:, lo:hi] = _symbols_to_fixed(code(i, means, scales, None), means)
                continue
            first = _symbols_to_fixed(code(i, means, scales, anchors), means).mul_(anchors)
            others = ~anchors       # the fusion corrects these positions only: run it there alone
            params[:, :, others] += _pointwise_at(self.fuse[i], torch.cat([self.spatial[i](first), params], dim=1),
                                                  others)
            means, scales = params.chunk(2, dim=1)
            second = _symbols_to_fixed(code(i, means, scales, others), means)
            buf[:, lo:hi] = torch.where(anchors, first, second)

    def compress(self, y: torch.Tensor, level: int = 0) -> tuple[dict, float]:
        """Sections of a gain-scaled latent and its ideal bit count."""
        ez, ey = SymbolEncoder(), SymbolEncoder()
        hyper, z_bits = self.hyper.compress(y, ez)
        buf, c = self._context_buffer(hyper)
        bits = [z_bits]
        slices = self._slice_channels(0)

        def code(i, means, scales, where):
            sym = _residual_symbols(y[:, slices[i][0]:slices[i][1]], means)
            if where is None:
                bits.append(self.gaussian.encode(ey, sym, scales))
            else:
                bits.append(self.gaussian.encode(ey, sym[:, :, where.cpu().numpy()], scales[:, :, where]))
            return sym

        self._fill_slices(buf, c, code)
        return {"z": ez.finish(), "y": ey.finish()}, sum(bits)

    def _decode_buffer(self, sections: dict, shape: tuple) -> tuple[torch.Tensor, int]:
        buf, c = self._context_buffer(self.hyper.decompress(SymbolDecoder(sections["z"]), _z_shape(self.hyper, shape)))
        dy = SymbolDecoder(sections["y"])

        def code(i, means, scales, where):
            if where is None:
                return self.gaussian.decode(dy, scales)
            sym = np.zeros(scales.shape, dtype=np.int64)
            sym[:, :, where.cpu().numpy()] = self.gaussian.decode(dy, scales[:, :, where])
            return sym

        self._fill_slices(buf, c, code)
        return buf, c

    def decode_quantized(self, sections: dict, shape: tuple, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact fixed-point hyper features and quantized latent, before latent residual prediction."""
        buf, c = self._decode_buffer(sections, shape)
        return buf[:, :c], buf[:, c:]

    def decompress(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        return self._refine(*self._decode_buffer(sections, shape))


ARCHITECTURES = {"factorized": FactorizedModel, "hyperprior": HyperpriorModel, "slice": SliceModel,
                 "walloc": WallocModel}

PRESETS = {
    "factorized": ImageModelConfig(arch="factorized", N=128, M=192),
    "hyperprior": ImageModelConfig(arch="hyperprior", N=128, M=192),
    "slice": ImageModelConfig(arch="slice", N=192, M=320, slices=(16, 16, 32, 64, 192), hyper_channels=160),
    "walloc": ImageModelConfig(arch="walloc", N=128, M=32,
                               extra={"wavelet": DEFAULT_WAVELET, "wavelet_levels": 3, "blocks": 3}),
    # WaLLoC for audio (trained by ``ncodec train audio --codec walloc``): mono 16 kHz, 64 packet bands of
    # 4 ms -> 16 latent channels; MSE lambdas for samples in [-1, 1] (speech at about -26 dBFS: 6-64 kbps)
    "walloc-audio": ImageModelConfig(arch="walloc", N=128, M=16, lambdas=(0.01, 0.03, 0.09, 0.27, 0.8, 2.4),
                                     extra={"dims": 1, "channels": 1, "sample_rate": 16000, "wavelet": DEFAULT_WAVELET,
                                            "wavelet_levels": 6, "blocks": 3}),
}


def build_model(config: ImageModelConfig, decoder_only: bool = False) -> ImageModel:
    """Instantiate the model for a config: trainable, from CompressAI's layers, or with
    ``decoder_only`` what decoding needs, without CompressAI (see module doc)."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown image architecture {config.arch!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[config.arch](config, decoder_only)

