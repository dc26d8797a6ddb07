"""Parameter-guided channel saliency of a trained model's latent (ISCS) and the reordering it gives.

A latent channel's saliency is read off the trained parameters alone: the variance of the analysis
transform's output filter for that channel times the square of its quality gain (mean over the
levels), i.e. how strongly the gain-scaled channel varies.  :func:`measured_importance` is the data
side it stands in for (the distortion added when a channel is replaced by its mean);
``python -m ncodec.image.saliency photo.png ...`` compares the two (figures: docs/models.md).

:func:`reorder_latent_channels` permutes a trained model's latent channels (the analysis output, the
synthesis input, the gains and the hyper analysis input; the reconstruction is unchanged), so that the
slices take the channels in saliency order: the first slices hold the salient core and the later,
auxiliary slices can depend on the core alone (``core_slices``: they decode in parallel).  The
networks that read or predict particular latent channels (the slice contexts, their checkerboard parts
and latent residual prediction) no longer fit and are trained again (``ncodec train image
--reorder-channels``).
"""
from __future__ import annotations

import torch

from .models import ImageModel

LATENT_READERS = ("context", "spatial", "fuse", "lrp")   # modules tied to the latent's channel order


def channel_saliency(model: ImageModel) -> torch.Tensor:
    """One score per latent channel, larger for the channels that carry more of the image."""
    weight = model.g_a[-1].weight.detach().float()                       # (M, N, k, k)
    gain = model.log_gain.detach().float().mean(0).exp()                 # (M,)
    return weight.flatten(1).var(1) * gain ** 2


def saliency_order(model: ImageModel) -> torch.Tensor:
    """The latent channels from most to least salient (a permutation of range(M))."""
    return torch.argsort(channel_saliency(model), descending=True, stable=True)


@torch.no_grad()
def measured_importance(model: ImageModel, x: torch.Tensor, quality: float) -> torch.Tensor:
    """Per latent channel, the mean squared error (pixels in [0, 1]) that replacing the channel's decoded
    latent by its spatial mean adds to the reconstruction of the (1, 3, H, W) image ``x`` at ``quality``
    (1-based)."""
    q = torch.tensor([quality - 1.0])
    gain, inv_gain = model.gains(q)
    latent = {}
    hook = model.g_s.register_forward_pre_hook(lambda module, args: latent.setdefault("y", args[0]))
    try:
        model.latent_forward(model.g_a(x) * gain, inv_gain, q)
    finally:
        hook.remove()
    y = latent["y"]
    base = ((model.g_s(y).clamp(0, 1) - x) ** 2).mean()
    added = torch.empty(y.shape[1])
    for c in range(y.shape[1]):
        ablated = y.clone()
        ablated[:, c] = y[:, c].mean()
        added[c] = ((model.g_s(ablated).clamp(0, 1) - x) ** 2).mean() - base
    return added


@torch.no_grad()
def reorder_latent_channels(model: ImageModel, order: torch.Tensor) -> None:
    """Put ``model``'s latent channels in ``order`` (new channel i is old channel order[i]), in place.
    Every transform and gain around the latent is permuted alike; the networks named in
    :data:`LATENT_READERS` are left as they were and no longer fit (train them again)."""
    order = order.to(torch.long)
    if sorted(order.tolist()) != list(range(model.config.M)):
        raise ValueError("order must be a permutation of the latent channels")
    last, first = model.g_a[-1], model.g_s[0]
    last.weight.copy_(last.weight[order])
    last.bias.copy_(last.bias[order])
    first.weight.copy_(first.weight[order])                # ConvTranspose2d: input channels first
    model.log_gain.copy_(model.log_gain[:, order])
    model.log_inv_gain.copy_(model.log_inv_gain[:, order])
    if getattr(model, "h_a", None) is not None:
        model.h_a[0].weight.copy_(model.h_a[0].weight[:, order])


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors (without ties)."""
    ra, rb = (v.argsort().argsort().double() for v in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def main(argv=None) -> int:
    """Rank correlation of the saliency with the measured importance on the given images."""
    import argparse

    import numpy as np

    from ..api import load_codec
    from ..registry import assets_dir
    from .io import read_image

    p = argparse.ArgumentParser(prog="python -m ncodec.image.saliency", description=main.__doc__)
    p.add_argument("images", nargs="+")
    p.add_argument("--weights", default=str(assets_dir() / "image-slice.safetensors"))
    p.add_argument("--quality", type=float, default=3.0)
    p.add_argument("--crop", type=int, nargs=4, metavar=("TOP", "LEFT", "H", "W"), default=None)
    a = p.parse_args(argv)
    codec = load_codec("slice", "cpu", weights=a.weights)
    model, added = codec.model, 0
    for path in a.images:
        rgb = read_image(path)[:, :, :3]
        if a.crop:
            top, left, h, w = a.crop
            rgb = rgb[top:top + h, left:left + w]
        rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
        added = added + measured_importance(model, codec.padded_input(rgb), a.quality)
    saliency, m = channel_saliency(model), model.config.M
    top = min(64, m)
    print(f"Spearman, saliency against measured importance: {rank_correlation(saliency, added):.3f}; "
          f"trained channel order against it: {rank_correlation(-torch.arange(m).float(), added):.3f}")
    most = set(torch.argsort(added, descending=True)[:top].tolist())
    print(f"of the {top} most important channels, {len(most & set(saliency_order(model)[:top].tolist()))} are "
          f"among the {top} most salient and {len(most & set(range(top)))} among the first {top}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
