"""The overfitted image model: latent grids, their auto-regressive entropy model, upsampling and
synthesis (the C3 / Cool-chic family, fitted to one image at encoding time).

* ``levels`` latent grids of one channel each, at full resolution down to 1/2**(levels-1), hold
  integers once coded;
* the auto-regressive model (ARM) predicts a Laplace mean and log-scale for every latent value from
  ``CAUSAL`` neighbours in its own grid and ``COARSE`` neighbours in the next coarser grid (which is
  decoded first), with a small MLP shared by every grid;
* every grid is upsampled to full resolution (learned separable 2x filters, one per grid, applied from the
  coarsest grid down) and
  a per-pixel MLP followed by two 3x3 residual convolutions turns the stacked grids into RGB.

The forward pass here is the float training model; :mod:`.arm` evaluates the same ARM exactly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

# Causal neighbours (dy, dx) of a latent in its own grid.  Decoding runs in wavefronts
# t = x + 2 * y, so a neighbour above may lie at most one column to the right.
CAUSAL = ((-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2),
          (-1, -2), (-1, -1), (-1, 0), (-1, 1),
          (0, -3), (0, -2), (-1, -3), (0, -1))
# Neighbours (dy, dx) in the next coarser grid, around the co-located value (y // 2, x // 2).
COARSE = ((0, 0), (-1, 0), (0, -1), (0, 1), (1, 0))
LOG_SCALE_MIN, LOG_SCALE_MAX = math.log(0.02), math.log(64.0)
UPSAMPLE_TAPS = 8


@dataclass(frozen=True)
class OverfitConfig:
    """The architecture of an overfitted image model (stored in the stream)."""

    levels: int = 7
    arm_hidden: int = 16
    synth_hidden: int = 16

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def context(self) -> int:
        return len(CAUSAL) + len(COARSE)


def grid_shapes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    """(height, width) of every latent grid, finest first."""
    return [(-(-h // 2**k), -(-w // 2**k)) for k in range(levels)]


def _bicubic_taps() -> torch.Tensor:
    """The 8 taps of 2x bicubic interpolation (a = -0.75) as one transposed-convolution kernel."""
    def cubic(t):
        t, a = abs(t), -0.75
        return (a + 2) * t**3 - (a + 3) * t**2 + 1 if t <= 1 else (a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0)
    return torch.tensor([cubic((k - 3.5) / 2) for k in range(UPSAMPLE_TAPS)])


def arm_net(context: int, hidden: int) -> nn.Sequential:
    """The ARM's MLP as 1x1 convolutions (the exact fixed-point evaluator takes these)."""
    return nn.Sequential(nn.Conv2d(context, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                         nn.Conv2d(hidden, 2, 1))


class OverfitModel(nn.Module):
    """Latent grids for an h x w image plus the networks that decode them."""

    def __init__(self, h: int, w: int, config: OverfitConfig = OverfitConfig()):
        super().__init__()
        self.h, self.w, self.config = h, w, config
        self.grids = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, gh, gw))
                                       for gh, gw in grid_shapes(h, w, config.levels)])
        self.arm = arm_net(config.context, config.arm_hidden)
        self.upsample = nn.Parameter(_bicubic_taps().repeat(config.levels - 1, 1))   # one filter per grid
        hid = config.synth_hidden
        self.synthesis = nn.Sequential(nn.Conv2d(config.levels, hid, 1), nn.ReLU(), nn.Conv2d(hid, hid, 1), nn.ReLU(),
                                       nn.Conv2d(hid, 3, 1))
        self.residual = nn.ModuleList([nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate") for _ in range(2)])
        for conv in self.residual:
            nn.init.zeros_(conv.weight), nn.init.zeros_(conv.bias)

    # -- the networks, shared by training and decoding -----------------------------------------
    def _up2(self, x: torch.Tensor, k: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """2x upsampling with the separable filter ``k``, cropped to h x w."""
        c = x.shape[1]
        k = k.to(x.dtype)
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate").contiguous(memory_format=torch.channels_last)   # 4x faster
        y = F.conv_transpose2d(xp, k.view(1, 1, UPSAMPLE_TAPS, 1).expand(c, 1, -1, -1), stride=(2, 1), groups=c)
        y = F.conv_transpose2d(y, k.view(1, 1, 1, UPSAMPLE_TAPS).expand(c, 1, -1, -1), stride=(1, 2), groups=c)
        return y[:, :, 5:5 + h, 5:5 + w]

    def synthesise(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """Decoded latent grids (finest first) -> (1, 3, h, w) image, unclamped."""
        x = latents[-1]
        for k in reversed(range(len(latents) - 1)):
            lat = latents[k]
            x = torch.cat([self._up2(x, self.upsample[k], lat.shape[2], lat.shape[3]), lat], dim=1)
        x = self.synthesis(x.contiguous(memory_format=torch.channels_last))   # 2x faster than NCHW on CPUs
        for conv in self.residual:
            x = x + conv(x)
        return x

    def arm_rows(self, latents: list[torch.Tensor], k: int) -> torch.Tensor:
        """The ARM's input for grid ``k``: one row of ``context`` values per latent value (raster
        order): causal neighbours, then coarse ones, zeros beyond the grids; the rows the exact coder
        (:mod:`.arm`) feeds the same MLP."""
        lat = latents[k][0, 0]
        gh, gw = lat.shape
        pad = F.pad(lat, (3, 2, 2, 0))
        ctx = [pad[2 + dy:2 + dy + gh, 3 + dx:3 + dx + gw] for dy, dx in CAUSAL]
        coarse = F.pad(self._coarse(latents, k), (2, 2, 2, 2))
        ctx += [coarse[2 + 2 * dy:2 + 2 * dy + gh, 2 + 2 * dx:2 + 2 * dx + gw] for dy, dx in COARSE]
        return torch.stack(ctx, dim=-1).view(gh * gw, len(ctx))

    def _coarse(self, latents: list[torch.Tensor], k: int) -> torch.Tensor:
        """Grid k + 1 repeated 2x2 (value (y, x) is coarse (y // 2, x // 2)), one row or column more than
        grid k where its size is odd; zeros for the coarsest grid."""
        if k + 1 == len(latents):
            return torch.zeros_like(latents[k][0, 0])
        return latents[k + 1][0, 0].repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)

    def arm_params(self, latents: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Laplace mean and log-scale of every value of grid ``k``, each shaped like the grid."""
        a = self.arm_rows(latents, k)
        for layer in self.arm:    # 1x1 convolutions applied as matrix products on the rows
            a = F.linear(a, layer.weight[:, :, 0, 0], layer.bias) if isinstance(layer, nn.Conv2d) else layer(a)
        shape = latents[k].shape
        return a[:, 0].view(shape), a[:, 1].clamp(LOG_SCALE_MIN, LOG_SCALE_MAX).view(shape)


def laplace_bits(values: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(values) under Laplace(mean, exp(log_scale)) discretised to unit bins."""
    inv = torch.exp(-log_scale)
    d = (values - mean).abs()
    upper = torch.exp(-(d + 0.5) * inv)
    lower = torch.exp(-(d - 0.5).clamp_min(0) * inv)
    # |d| < 0.5: the bin straddles the mean: 1 - (e^-(0.5-d) + e^-(0.5+d)) / 2
    inside = 1 - 0.5 * (torch.exp(-(0.5 - d).clamp_min(0) * inv) + upper)
    p = torch.where(d < 0.5, inside, 0.5 * (lower - upper))
    return -torch.log2(p.clamp_min(2.0**-30))
