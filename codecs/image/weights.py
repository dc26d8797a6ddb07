"""Image model weights: safetensors files (see :mod:`ncodec.weightsfile`) holding the
tensors, the config that builds the model, and the entropy tables the coder uses (so every
machine codes with the same numbers).  Loading never unpickles anything.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from ..entropy import FactorizedPrior
from ..errors import ModelMismatchError
from ..weightsfile import RANS_BUFFERS, model_tensors, prior_tensors, read_prior, read_weights, write_weights
from .models import ImageModel, ImageModelConfig, build_model

FORMAT = "ncodec-image-model/1"
ENCODER_SIDE = ("g_a.", "h_a.", "z_prior.", "priors.")   # tensors a decoder-only model leaves out


def priors_of(model: ImageModel) -> dict[str, FactorizedPrior]:
    """Tabulate the model's factorized priors (named as stored in the weights file)."""
    if model.config.per_level_priors:
        return {f"prior{i}": FactorizedPrior.from_bottleneck(b) for i, b in enumerate(model.priors)}
    return {"prior_z": FactorizedPrior.from_bottleneck(model.z_prior)}


def export_model(model: ImageModel, path: Path, extra: dict | None = None) -> bytes:
    """Write a trained model as safetensors; returns its digest."""
    model = model.cpu().float().eval()
    tensors = model_tensors(model)
    for prefix, prior in priors_of(model).items():
        tensors.update(prior_tensors(f"coder.{prefix}", prior))
    return write_weights(path, tensors, model.config.to_dict(), FORMAT, extra)


class LoadedWeights:
    """A model rebuilt from a weights file, with its priors and digest."""

    def __init__(self, model: ImageModel, priors: dict[str, FactorizedPrior], digest: bytes, extra: dict):
        self.model, self.priors, self.digest, self.extra = model, priors, digest, extra


def load_weights(path: Path, decoder_only: bool = False) -> LoadedWeights:
    """Read a weights file (no pickle) and rebuild its model in eval mode: the trainable model, or
    with ``decoder_only`` the decoder of :func:`~ncodec.image.models.build_model` (built without
    CompressAI, its modules on the meta device and then given the file's tensors, converted to
    float32, without initialising weights that the file replaces; encoder-side tensors are skipped)."""
    f = read_weights(path, FORMAT, "image model")
    try:
        with torch.device("meta") if decoder_only else nullcontext():
            model = build_model(ImageModelConfig.from_dict(f.config), decoder_only)
    except (TypeError, ValueError) as exc:
        raise ModelMismatchError(f"{path} has an unusable config ({exc})") from None
    skip = ("coder.",) + (ENCODER_SIDE if decoder_only else ())
    try:
        missing, unexpected = model.load_state_dict(f.state(skip), strict=False, assign=decoder_only)
    except RuntimeError as exc:
        raise ModelMismatchError(f"{path} does not fit architecture {model.config.arch!r} ({exc})") from None
    missing = [m for m in missing if not any(b in m for b in RANS_BUFFERS)]
    if missing or unexpected:
        raise ModelMismatchError(f"{path} does not fit architecture {model.config.arch!r} (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
    priors = {key: read_prior(f.tensors, f"coder.{key}")
              for key in {k.split(".")[1] for k in f.tensors if k.startswith("coder.")}}
    return LoadedWeights(model.eval(), priors, f.digest, f.extra)
