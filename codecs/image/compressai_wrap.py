"""Wrap a CompressAI model (zoo architecture, the user's own checkpoint) as an ncodec codec.

The wrapped codec uses the model's own transforms and trained densities, but codes with
ncodec's container, constriction coder and exact fixed-point entropy path instead of
CompressAI's rANS coder, so its streams are self-describing and device independent.
Supported: ``FactorizedPrior`` (bmshj2018-factorized), ``ScaleHyperprior``
(bmshj2018-hyperprior) and ``MeanScaleHyperprior`` (mbt2018-mean) and their subclasses
that keep the same ``g_a``/``g_s``/``h_a``/``h_s`` structure.
"""
from __future__ import annotations

import json

import torch
from torch import nn

from ..entropy import FactorizedPrior
from ..errors import UsageError
from .codec import ImageCodec
from .models import FactorizedLatentCodec, HyperpriorLatentCodec, ImageModel, ImageModelConfig
from ..weightsfile import tensors_digest


class _FixedRateTransforms(nn.Module):
    """g_a / g_s of a single-rate model, with unit gains so it fits ImageCodec."""

    stride, tiling = ImageModel.stride, ImageModel.tiling

    def __init__(self, net: nn.Module, config: ImageModelConfig):
        super().__init__()
        self.g_a, self.g_s, self.config = net.g_a, net.g_s, config

    def gains(self, quality: torch.Tensor):
        one = torch.ones(len(quality), self.config.M, 1, 1, device=quality.device)
        return one, one


def _latent_channels(net: nn.Module) -> int:
    convs = [m for m in net.g_a.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def from_compressai(net: nn.Module, name: str = "compressai-custom", device: str = "cpu") -> ImageCodec:
    """An ncodec ImageCodec (one quality, ``quality=1``) around a trained CompressAI model."""
    from compressai.models import FactorizedPrior as CaiFactorized, MeanScaleHyperprior, ScaleHyperprior

    net = net.eval().cpu().float()
    M = _latent_channels(net)
    if isinstance(net, MeanScaleHyperprior):
        arch = "hyperprior"
        latent = HyperpriorLatentCodec(net.h_a, net.h_s, FactorizedPrior.from_bottleneck(net.entropy_bottleneck),
                                       layout="scales,means")
    elif isinstance(net, ScaleHyperprior):
        arch = "hyperprior"
        latent = HyperpriorLatentCodec(net.h_a, net.h_s, FactorizedPrior.from_bottleneck(net.entropy_bottleneck),
                                       layout="scales", abs_input=True)
    elif isinstance(net, CaiFactorized):
        arch = "factorized"
        latent = FactorizedLatentCodec([FactorizedPrior.from_bottleneck(net.entropy_bottleneck)])
    else:
        raise UsageError(f"cannot wrap CompressAI model {type(net).__name__}: supported are FactorizedPrior, "
                         "ScaleHyperprior and MeanScaleHyperprior")
    config = ImageModelConfig(arch=arch, M=M, lambdas=(0.0,), extra={"compressai": type(net).__name__})
    digest = tensors_digest(net.state_dict(), json.dumps(config.to_dict(), sort_keys=True))
    return ImageCodec(name, _FixedRateTransforms(net, config), latent, digest, device=device,
                      description=f"CompressAI {type(net).__name__} wrapped by ncodec")


@torch.no_grad()
def to_compressai(codec: ImageCodec, quality: float) -> nn.Module:
    """The CompressAI model computing the same thing as one of ncodec's own factorized or
    hyperprior codecs at one quality (gains folded into the transforms, same densities), for
    side-by-side benchmarks of CompressAI's own ``compress``/``decompress`` path."""
    import copy

    from compressai.models import FactorizedPrior as CaiFactorized, MeanScaleHyperprior

    model, cfg = codec.model, codec.config
    if cfg.arch not in ("factorized", "hyperprior"):
        raise UsageError(f"CompressAI has no equivalent of ncodec's {cfg.arch!r} architecture")
    gain, inv_gain = (g.flatten().cpu() for g in model.gains(torch.tensor([quality - 1.0], device=codec.device)))
    net = (CaiFactorized if cfg.arch == "factorized" else MeanScaleHyperprior)(N=cfg.N, M=cfg.M)
    net.g_a, net.g_s = copy.deepcopy(model.g_a).cpu().float(), copy.deepcopy(model.g_s).cpu().float()
    net.g_a[-1].weight.mul_(gain.view(-1, 1, 1, 1))
    net.g_a[-1].bias.mul_(gain)
    net.g_s[0].weight.mul_(inv_gain.view(-1, 1, 1, 1))
    if cfg.arch == "factorized":
        net.entropy_bottleneck = copy.deepcopy(model.priors[int(quality) - 1]).cpu()
    else:
        net.h_a = copy.deepcopy(model.h_a).cpu().float()
        net.h_s = copy.deepcopy(model.h_s).cpu().float()
        last = net.h_s[-1]                  # ncodec orders (means, scales); CompressAI (scales, means)
        last.weight.copy_(torch.cat(last.weight.chunk(2, dim=0)[::-1]))
        last.bias.copy_(torch.cat(last.bias.chunk(2)[::-1]))
        net.entropy_bottleneck = copy.deepcopy(model.z_prior).cpu()
    net.update(force=True)
    return net.eval().to(memory_format=torch.contiguous_format)   # CompressAI's default layout
