"""Audio model weights: a safetensors file (see :mod:`ncodec.weightsfile`) with the tensors,
the config that builds the model, the hyper-latent prior's coder tables and the digest
containers record; loading never unpickles anything.
"""
from __future__ import annotations

from pathlib import Path

from ..entropy import FactorizedPrior
from ..errors import ModelMismatchError
from ..weightsfile import RANS_BUFFERS, model_tensors, prior_tensors, read_prior, read_weights, write_weights
from .model import AudioModel, AudioModelConfig

FORMAT = "ncodec-audio-model/1"
PRIOR = "coder.prior_z"


def export_model(model: AudioModel, path: Path, extra: dict | None = None) -> bytes:
    """Write a trained model as safetensors; returns its digest."""
    model = model.cpu().float().eval()
    tensors = model_tensors(model)
    tensors.update(prior_tensors(PRIOR, FactorizedPrior.from_bottleneck(model.z_prior)))
    return write_weights(path, tensors, model.config.to_dict(), FORMAT, extra)


class LoadedWeights:
    """A model rebuilt from a weights file, with its z prior tables, digest and extra metadata."""

    def __init__(self, model: AudioModel, z_prior: FactorizedPrior, digest: bytes, extra: dict):
        self.model, self.z_prior, self.digest, self.extra = model, z_prior, digest, extra


def _rebuild(f, path: Path, warm_start: bool, **overrides) -> AudioModel:
    """The model a weights file describes (its config updated by ``overrides``), with its tensors;
    for a ``warm_start``, a learned noise-fill shaper or post-filter the file lacks (or a post-filter
    of another width) starts neutral."""
    try:
        model = AudioModel(AudioModelConfig.from_dict({**f.config, **overrides}))
        state = f.state()
        if warm_start and model.config.postfilter != f.config.get("postfilter", 0):
            state = {k: v for k, v in state.items() if not k.startswith("postfilter.")}   # a new one starts neutral
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelMismatchError(f"{path} does not fit the audio model ({str(exc).splitlines()[-1].strip()})") from None
    missing = [k for k in missing
               if not any(b in k for b in RANS_BUFFERS) and not (warm_start and k.startswith(("fill.", "postfilter.")))]
    if missing or unexpected:
        raise ModelMismatchError(f"{path} does not fit the audio model (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
    return model


def load_weights(path: Path) -> LoadedWeights:
    """Read a weights file (no pickle), verify its digest and rebuild the model in eval mode, with
    the z prior's coder tables."""
    f = read_weights(path, FORMAT, "audio model")
    return LoadedWeights(_rebuild(f, path, warm_start=False).eval(), read_prior(f.tensors, PRIOR), f.digest, f.extra)


def training_model(init: Path | None = None, **overrides) -> AudioModel:
    """A model to train: fresh, or warm-started from weights file ``init``
    (its config updated by ``overrides``, e.g. ``fill_width``)."""
    if init is None:
        return AudioModel(AudioModelConfig(**overrides))
    return _rebuild(read_weights(init, FORMAT, "audio model"), init, warm_start=True, **overrides)
