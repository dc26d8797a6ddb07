"""Decoder-side post-filter for speech: a gain for every decoded MDCT coefficient below 8 kHz.

The band fill (:mod:`.bandfill`) gives every zero-coded coefficient of a band the same expected
level, so at low rates the valleys between a voiced frame's harmonics fill with as much noise as
the harmonics themselves get, which listeners (and PESQ) hear as roughness.  Like the post-filters
of Opus 1.5 (LACE) and LC3, a small network looks at what the decoder already has around each
coefficient (its reconstruction, its coded scale, whether it was coded as zero, the chunk's
quality) over 13 bins and 5 frames, and returns a gain between 1/2 and 2 for it.  It reads nothing
the range coder needs and writes nothing back, so streams stay bit-exact with or without it; it
runs in float on the decoder only, on streams quantized for speech (the power-law quantizer,
:mod:`.powerlaw`), over the bins below 8 kHz where PESQ-WB and ViSQOL's speech mode listen.

Trained after the codec, on the codec's own decoded speech (:mod:`.postfilter_train`); the weights
file carries it (config ``postfilter``: its width, 0 = none).  About 25 million multiply-adds per
second of 16 kHz speech at width 8.
"""
from __future__ import annotations

import torch
from torch import nn

from .latent import from_grid, to_grid

FEATURES = 5              # reconstruction, log-scale, coded-as-zero, quality, frequency
MAX_LOG2_GAIN = 1.0       # gains lie in 2 ** (-1 .. 1)
TOP_HZ = 8000             # the post-filter shapes the bins below this frequency


class PostFilter(nn.Module):
    """Per-coefficient gains of a decoded chunk (see module doc); neutral (all 1) until trained."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(FEATURES, width, (5, 3), padding=(2, 1)), nn.LeakyReLU(inplace=True),
                                 nn.Conv2d(width, width, (5, 3), padding=(4, 1), dilation=(2, 1)),
                                 nn.LeakyReLU(inplace=True), nn.Conv2d(width, 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y_hat: torch.Tensor, log_scale: torch.Tensor, y_rec: torch.Tensor,
                quality, levels: int) -> torch.Tensor:
        """Gains (B, bins, 1, T) for the symbols ``y_hat``, their log-scales and their reconstruction
        ``y_rec`` (all (B, bins, 1, T), the companded gain domain) at 0-based ``quality`` of ``levels``
        (a number, or one per item)."""
        b, bins, _, t = y_rec.shape
        magnitude = torch.log2(1 + y_rec.abs())
        frequency = torch.linspace(0, 1, bins, device=y_rec.device).view(1, 1, bins, 1).expand(b, 1, bins, t)
        features = torch.cat([to_grid(magnitude), to_grid(log_scale.to(magnitude.dtype)),
                              to_grid((y_hat == 0).to(magnitude.dtype)),
                              quality_plane(quality, levels, frequency), frequency], dim=1)
        return from_grid(2.0 ** (MAX_LOG2_GAIN * torch.tanh(self.net(features))))


def quality_plane(quality, levels: int, like: torch.Tensor) -> torch.Tensor:
    """0-based ``quality`` (a number or one per item) over ``levels``, as a plane shaped like ``like``."""
    q = torch.as_tensor(quality, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)
    return (q / max(levels - 1, 1)).expand_as(like)


def shaped_bins(hop: int, sample_rate: int, top_bin: int) -> int:
    """How many of a chunk's lowest bins the post-filter shapes: those below :data:`TOP_HZ` and the
    input's Nyquist bin ``top_bin``."""
    return min(top_bin, hop * TOP_HZ * 2 // sample_rate)


def apply(postfilter: PostFilter, y_hat: torch.Tensor, log_scale: torch.Tensor, y_rec: torch.Tensor,
          quality, levels: int, bins: int) -> torch.Tensor:
    """``y_rec`` with its lowest ``bins`` bins multiplied by the post-filter's gains."""
    if bins <= 0:
        return y_rec
    low = y_rec[:, :bins] * postfilter(y_hat[:, :bins], log_scale[:, :bins], y_rec[:, :bins], quality, levels)
    return torch.cat([low, y_rec[:, bins:]], dim=1)
