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


def _rebuild(f, path: Path, trainable: bool, **overrides) -> AudioModel:
    """The model a weights file describes (its config updated by ``overrides``), with its tensors.
    An inference model skips the trainable z density (its coder tables replace it); a trainable one
    keeps it, and a learned noise-fill shaper the file lacks starts neutral."""
    try:
        model = AudioModel(AudioModelConfig.from_dict({**f.config, **overrides}), trainable_prior=trainable)
        missing, unexpected = model.load_state_dict(f.state() if trainable else f.state(skip=("coder.", "z_prior.")),
                                                    strict=False)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelMismatchError(f"{path} does not fit the audio model ({str(exc).splitlines()[-1].strip()})") from None
    if trainable:
        missing = [k for k in missing if not k.startswith("fill.") and not any(b in k for b in RANS_BUFFERS)]
    if missing or unexpected:
        raise ModelMismatchError(f"{path} does not fit the audio model (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
    return model


def load_weights(path: Path) -> LoadedWeights:
    """Read a weights file (no pickle), verify its digest and rebuild the inference model in eval
    mode (without the trainable z density, whose coder tables are loaded instead)."""
    f = read_weights(path, FORMAT, "audio model")
    return LoadedWeights(_rebuild(f, path, trainable=False).eval(), read_prior(f.tensors, PRIOR), f.digest, f.extra)


def training_model(init: Path | None = None, **overrides) -> AudioModel:
    """A trainable model (with its z density): fresh, or warm-started from weights file ``init``
    (its config updated by ``overrides``, e.g. ``fill_width``)."""
    if init is None:
        return AudioModel(AudioModelConfig(**overrides))
    return _rebuild(read_weights(init, FORMAT, "audio model"), init, trainable=True, **overrides)
