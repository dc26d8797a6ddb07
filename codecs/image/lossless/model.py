"""The lossless image model: per colour plane, a small network that gives every value a discretised
logistic distribution (mean: the LOCO-I prediction plus a learned correction; scale: learned) from
the integer features of :mod:`.context`.

Each plane's network is a linear map plus a two-layer MLP of the same inputs, both made of 1x1
convolutions so that :class:`~ncodec.entropy.FixedPointMLP` evaluates them exactly for the coder.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .context import FEATURE_SCALE, feature_count

LOG_SCALE_MIN, LOG_SCALE_MAX = math.log(0.05), math.log(64.0)


class PlaneNet(nn.Module):
    """Features of one plane's values -> (mean correction, log-scale) of their distributions."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.linear = nn.Sequential(nn.Conv2d(inputs, 2, 1))
        self.mlp = nn.Sequential(nn.Conv2d(inputs, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2, 1))
        nn.init.zeros_(self.linear[0].weight)
        nn.init.zeros_(self.linear[0].bias)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, inputs) features already divided by ``FEATURE_SCALE`` -> mean correction and log-scale (n,)."""
        out = _rows_through(self.linear, rows) + _rows_through(self.mlp, rows)
        return out[:, 0], out[:, 1].clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)


def _rows_through(net: nn.Sequential, a: torch.Tensor) -> torch.Tensor:
    for layer in net:    # 1x1 convolutions applied as matrix products on the rows
        a = F.linear(a, layer.weight[:, :, 0, 0], layer.bias) if isinstance(layer, nn.Conv2d) else layer(a)
    return a


class LosslessModel(nn.Module):
    """One :class:`PlaneNet` per colour plane."""

    def __init__(self, planes: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.nets = nn.ModuleList([PlaneNet(feature_count(c), hidden) for c in range(planes)])

    def weight_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters by quantisation group: weights and biases."""
        named = list(self.named_parameters())
        return {kind: [p for name, p in named if name.endswith(kind)] for kind in ("weight", "bias")}


def logistic_bits(values: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(values) under a logistic(mean, exp(log_scale)) discretised to unit bins."""
    inv = torch.exp(-log_scale)
    d = (values - mean).abs()          # symmetric: the upper tail is the accurate one in float
    p = torch.sigmoid((0.5 - d) * inv) - torch.sigmoid((-0.5 - d) * inv)
    return -torch.log2(p.clamp_min(2.0**-30))


def scaled(features: torch.Tensor) -> torch.Tensor:
    """Integer features as the networks take them."""
    return features.float() / FEATURE_SCALE
