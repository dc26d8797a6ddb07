"""Image model weights: safetensors files holding the tensors, the config that builds the
model, and the entropy tables the coder uses (so every machine codes with the same
numbers).  Loading never unpickles anything.

Convolution kernels are stored as float16 to keep the files small; the fixed-point
entropy path is derived from the stored values, so it is exact whatever their precision.
Gains, GDN parameters, biases and the priors stay float32 / float64.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..entropy import FactorizedPrior, TableSet
from ..errors import InputError, ModelMismatchError
from .models import ImageModel, ImageModelConfig, build_model

FORMAT = "ncodec-image-model/1"


def tensors_digest(tensors: dict, config_json: str) -> bytes:
    """8-byte digest over the config and every tensor (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(config_json.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()[:8]


def _prior_tensors(prefix: str, prior: FactorizedPrior) -> dict:
    t = prior.tables
    return {
        f"{prefix}.pmfs": torch.from_numpy(t.pmfs.copy()),
        f"{prefix}.offsets": torch.from_numpy(t.offsets.copy()),
        f"{prefix}.lengths": torch.from_numpy(t.lengths.copy()),
        f"{prefix}.medians": torch.from_numpy(prior.medians_fixed.copy()),
    }


def priors_of(model: ImageModel) -> dict[str, FactorizedPrior]:
    """Tabulate the model's factorized priors (named as stored in the weights file)."""
    if model.config.arch == "factorized":
        return {f"prior{i}": FactorizedPrior.from_bottleneck(b) for i, b in enumerate(model.priors)}
    return {"prior_z": FactorizedPrior.from_bottleneck(model.z_prior)}


def export_model(model: ImageModel, path: Path, extra: dict | None = None) -> bytes:
    """Write a trained model as safetensors; returns its digest."""
    model = model.cpu().float().eval()
    tensors = {}
    for name, t in model.state_dict().items():
        if "_cdf" in name or "_offset" in name or "_quantized_cdf" in name:
            continue  # CompressAI's rANS tables: ncodec codes with its own tables below
        t = t.detach().contiguous()
        if t.is_floating_point() and t.dim() == 4:
            t = t.half()
        tensors[name] = t
    for prefix, prior in priors_of(model).items():
        tensors.update(_prior_tensors(f"coder.{prefix}", prior))
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
    """A model rebuilt from a weights file, with its priors and digest."""

    def __init__(self, model: ImageModel, priors: dict[str, FactorizedPrior], digest: bytes, extra: dict):
        self.model, self.priors, self.digest, self.extra = model, priors, digest, extra


def load_weights(path: Path) -> LoadedWeights:
    """Read a weights file (no pickle) and rebuild its model in eval mode."""
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
        raise ModelMismatchError(f"{path} is not an ncodec image model (format {meta.get('format')!r})")
    config_json = meta["config"]
    digest = tensors_digest(tensors, config_json)
    if digest.hex() != meta.get("digest"):
        raise ModelMismatchError(f"{path} is damaged: its tensors do not match the digest it records")
    config = ImageModelConfig.from_dict(json.loads(config_json))
    model = build_model(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if not k.startswith("coder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "_cdf" not in m and "_offset" not in m]
    if missing or unexpected:
        raise ModelMismatchError(f"{path} does not fit architecture {config.arch!r} (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
    priors = {}
    for key in {k.split(".")[1] for k in tensors if k.startswith("coder.")}:
        p = f"coder.{key}"
        tables = TableSet(tensors[f"{p}.pmfs"].numpy().astype(np.float64), tensors[f"{p}.offsets"].numpy(),
                          tensors[f"{p}.lengths"].numpy())
        priors[key] = FactorizedPrior(tables, tensors[f"{p}.medians"].numpy())
    return LoadedWeights(model.eval(), priors, digest, json.loads(meta.get("extra", "{}")))
