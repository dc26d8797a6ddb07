"""The latent stage every learned codec shares, below the modalities: quantizers, likelihoods,
gain interpolation between quality levels and the hyper-latent codec (training forward and exact
coding side by side)."""
from .gains import interpolate_levels
from .hyper import HyperLatentCodec, hyper_forward
from .likelihoods import SCALE_BOUND, bottleneck_likelihood, gaussian_likelihood
from .quantizers import (Quantizer, hard_quantizer, noise_quantizer, rounding_quantizer, ste_round,
                         training_quantizer)

__all__ = [
    "interpolate_levels", "HyperLatentCodec", "hyper_forward", "SCALE_BOUND", "bottleneck_likelihood",
    "gaussian_likelihood", "Quantizer", "hard_quantizer", "noise_quantizer", "rounding_quantizer", "ste_round",
    "training_quantizer",
]
