"""Encoder-side latent refinement (``ncodec encode --refine N``).

The analysis transform is amortised: one network guesses the latent of every image.  For
one image, a better latent can be found by optimising it directly for that image's own
rate-distortion loss (lambda(q) * 255^2 * MSE + bpp) with the decoder's networks fixed, as
Yang et al. 2020 ("Improving Inference for Neural Image Compression") and MLICv2's instance
adaptation do.  Rounding is relaxed by stochastic Gumbel annealing (SGA): each value is
softly drawn between its floor and ceiling with a temperature annealed towards hard
rounding.  Only the latent's own rate and its synthesis are relaxed: what the decoder's entropy
networks read (the hyper-latent ``z = h_a(y)`` and the slice and checkerboard contexts) is rounded
with straight-through gradients, so the means and scales the search sees are the ones the coder
will use.  The decoder is unchanged and pays nothing; the stream format is the same.

Refinement runs tile by tile (like the transforms), so memory stays bounded on large
images.  The search's forward passes run in bf16 where the hardware has it (CUDA, CPUs with
AVX512-BF16 or AMX): it only proposes latents.  After the last step the refined latent is
kept only if its real (rounded) loss, computed in float32, is lower than the analysis
transform's; :meth:`ncodec.image.codec.ImageCodec.encode` then codes both latents and keeps the
smaller real loss (file bits and decoded 8-bit pixels), so refinement never makes an image worse.
"""
from __future__ import annotations

import math

import torch

from ..entropy.tiling import run_tiled
from ..latent import hard_quantizer
from ..training import bf16_pays

TAU_START, TAU_END = 0.5, 0.2   # SGA temperature, annealed geometrically over the steps
LEARNING_RATE = 0.03             # Adam, cosine-decayed to zero over the steps


def sga_quantizer(tau: float, generator: torch.Generator):
    """Soft rounding: a relaxed draw between floor and ceiling, sharper as ``tau`` falls."""
    def quantize(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(v.device.type, enabled=False):   # float32 even in a bf16 encode
            v = v.float()
            floor = torch.floor(v)
            frac = (v - floor).clamp(1e-4, 1 - 1e-4)
            logits = torch.stack([-torch.atanh(frac), -torch.atanh(1 - frac)], dim=-1) / tau
            u = torch.rand(logits.shape, generator=generator, device=v.device)
            gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10)))
            soft = floor + torch.softmax((logits + gumbel) / tau, dim=-1)[..., 1]
        return soft, soft
    return quantize


def _loss(model, y, inv_gain, quality, x, mask, quantizer=None) -> torch.Tensor:
    """Rate-distortion loss of one image (distortion over its real pixels only).  ``quantizer``
    relaxes the latent; the hyper-latent is always rounded.  Without a ``quantizer`` (the final
    comparison) the output is clipped and rounded to 8 bits, as decoded."""
    out = model.latent_forward(y, inv_gain, quality, quantizer, hyper_quantizer=hard_quantizer)
    pixels = mask.sum().clamp_min(1)
    x_hat = out["x_hat"].float()
    if quantizer is None:
        x_hat = torch.round(x_hat.clamp(0, 1) * 255) / 255
    mse = ((x_hat - x).pow(2) * mask).sum() / (3 * pixels)
    bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"])
    return model.lambdas_for(quality)[0] * 255**2 * mse + bits / pixels


def refine_tile(model, xm: torch.Tensor, quality: float, steps: int, bf16: bool = False, seed: int = 0) -> torch.Tensor:
    """Refined gain-scaled latent of one padded tile; ``xm`` holds RGB and a mask of real pixels.
    ``bf16`` runs the optimisation's forward passes under bf16 autocast (float32 everywhere else)."""
    x, mask = xm[:, :3], xm[:, 3:]
    q = torch.tensor([quality - 1.0], device=x.device)
    gain, inv_gain = model.gains(q)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        y0 = model.g_a(x).float() * gain
        best = _loss(model, y0, inv_gain, q, x, mask)
    y = y0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    with torch.enable_grad():
        for step in range(steps):
            tau = TAU_START * math.pow(TAU_END / TAU_START, step / max(steps - 1, 1))
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = _loss(model, y, inv_gain, q, x, mask, sga_quantizer(tau, generator))
            (grad,) = torch.autograd.grad(loss, [y])
            y.grad = grad
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        refined = _loss(model, y, inv_gain, q, x, mask)
    return y.detach() if refined < best else y0


def refine_latent(model, x: torch.Tensor, mask: torch.Tensor, quality: float, steps: int,
                  tile: int, margin: int, stride: int) -> torch.Tensor:
    """Refined gain-scaled latent of a padded image ``x`` (1, 3, H, W), tile by tile."""
    bf16 = bf16_pays(x.device)
    was_training = model.training
    model.eval()
    try:
        return run_tiled(lambda xm: refine_tile(model, xm, quality, steps, bf16), torch.cat([x, mask], dim=1),
                         1 / stride, stride * tile, stride * margin)
    finally:
        model.train(was_training)
