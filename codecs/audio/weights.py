"""Audio model weights: a safetensors file with the tensors, the config that builds the
model, the hyper-latent prior's coder tables and the digest containers record.  The
digest and prior-table helpers are the image codec's (:mod:`ncodec.image.weights`);
loading never unpickles anything.  Convolution kernels are stored as float16.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..entropy import FactorizedPrior, TableSet
from ..errors import InputError, ModelMismatchError
from ..image.weights import _prior_tensors, tensors_digest
from .model import AudioModel, AudioModelConfig

FORMAT = "ncodec-audio-model/1"
PRIOR = "coder.prior_z"


def export_model(model: AudioModel, path: Path, extra: dict | None = None) -> bytes:
    """Write a trained model as safetensors; returns its digest."""
    model = model.cpu().float().eval()
    tensors = {}
    for name, t in model.state_dict().items():
        if "_cdf" in name or "_offset" in name:
            continue  # CompressAI's rANS tables: ncodec codes with its own tables
        t = t.detach().contiguous()
        tensors[name] = t.half() if t.is_floating_point() and t.dim() == 4 else t
    tensors.update(_prior_tensors(PRIOR, FactorizedPrior.from_bottleneck(model.z_prior)))
    config_json = json.dumps(model.config.to_dict(), sort_keys=True)
    digest = tensors_digest(tensors, config_json)
    meta = {"format": FORMAT, "config": config_json, "digest": digest.hex(),
            "extra": json.dumps(extra or {}, sort_keys=True)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return digest


class LoadedWeights:
    """A model rebuilt from a weights file, with its z prior tables, digest and extra metadata."""

    def __init__(self, model: AudioModel, z_prior: FactorizedPrior, digest: bytes, extra: dict):
        self.model, self.z_prior, self.digest, self.extra = model, z_prior, digest, extra


def load_weights(path: Path) -> LoadedWeights:
    """Read a weights file (no pickle), verify its digest and rebuild the model in eval mode."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise InputError(f"weights file not found: {path}") from None
    except Exception as exc:
        raise InputError(f"{path} is not a readable safetensors weights file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ModelMismatchError(f"{path} is not an ncodec audio model (format {meta.get('format')!r})")
    config_json = meta["config"]
    digest = tensors_digest(tensors, config_json)
    if digest.hex() != meta.get("digest"):
        raise ModelMismatchError(f"{path} is damaged: its tensors do not match the digest it records")
    model = AudioModel(AudioModelConfig.from_dict(json.loads(config_json)))
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if not k.startswith("coder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "_cdf" not in m and "_offset" not in m]
    if missing or unexpected:
        raise ModelMismatchError(f"{path} does not fit the audio model (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
    tables = TableSet(tensors[f"{PRIOR}.pmfs"].numpy().astype(np.float64), tensors[f"{PRIOR}.offsets"].numpy(),
                      tensors[f"{PRIOR}.lengths"].numpy())
    z_prior = FactorizedPrior(tables, tensors[f"{PRIOR}.medians"].numpy())
    return LoadedWeights(model.eval(), z_prior, digest, json.loads(meta.get("extra", "{}")))
