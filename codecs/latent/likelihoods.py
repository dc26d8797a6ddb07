"""Differentiable likelihoods of quantized latents, as the rate term of training counts them: a
learned factorized density (CompressAI's ``EntropyBottleneck``) and a zero-mean Gaussian."""
from __future__ import annotations

import math

import torch

from ..entropy.tables import SCALE_MIN

SCALE_BOUND = SCALE_MIN      # the smallest Gaussian scale, as on the coder's scale grid
LIKELIHOOD_BOUND = 1e-9


def bottleneck_likelihood(bottleneck, values: torch.Tensor) -> torch.Tensor:
    """Likelihoods of given (B, C, H, W) values under a CompressAI ``EntropyBottleneck``,
    differentiable in the values (its own forward rounds without a gradient outside training)."""
    c = values.shape[1]
    lik, _, _ = bottleneck._likelihood(values.transpose(0, 1).reshape(c, 1, -1))
    if bottleneck.use_likelihood_bound:
        lik = bottleneck.likelihood_lower_bound(lik)
    return lik.reshape(c, values.shape[0], *values.shape[2:]).transpose(0, 1)


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(v - 0.5 < Y < v + 0.5) for a zero-mean Gaussian of scale at least :data:`SCALE_BOUND`,
    computed in float32."""
    values = values.float().abs()
    scales = scales.float().clamp_min(SCALE_BOUND)
    c = 1.0 / math.sqrt(2.0)
    upper = torch.special.erfc(c * (values - 0.5) / scales)
    lower = torch.special.erfc(c * (values + 0.5) / scales)
    return (0.5 * (upper - lower)).clamp_min(LIKELIHOOD_BOUND)
