"""Model weights files shared by every modality: safetensors holding the tensors, the config
that rebuilds the model, the coder tables of its factorized priors, and an 8-byte digest that
containers record.  Reading never unpickles anything and verifies the digest.

Convolution kernels (4-D float tensors) are stored as float16 to keep the files small; the
fixed-point entropy paths are derived from the stored values, so they are exact whatever
their precision.  CompressAI's own rANS tables are never stored: ncodec codes with its own.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .entropy import FactorizedPrior, TableSet
from .errors import InputError, ModelMismatchError
from .fileio import atomic_output

RANS_BUFFERS = ("_cdf", "_offset")    # also _quantized_cdf, _cdf_length


def tensors_digest(tensors: dict, config_json: str) -> bytes:
    """8-byte digest over the config and every tensor (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(config_json.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")     # the bytes in place, no copy
    return h.digest()[:8]


def prior_tensors(prefix: str, prior: FactorizedPrior) -> dict:
    """The tensors that store a factorized prior's coder tables under ``prefix``."""
    t = prior.tables
    return {
        f"{prefix}.pmfs": torch.from_numpy(t.pmfs.copy()),
        f"{prefix}.offsets": torch.from_numpy(t.offsets.copy()),
        f"{prefix}.lengths": torch.from_numpy(t.lengths.copy()),
        f"{prefix}.medians": torch.from_numpy(prior.medians_fixed.copy()),
    }


def read_prior(tensors: dict, prefix: str) -> FactorizedPrior:
    """Inverse of :func:`prior_tensors`."""
    tables = TableSet(tensors[f"{prefix}.pmfs"].numpy().astype(np.float64), tensors[f"{prefix}.offsets"].numpy(),
                      tensors[f"{prefix}.lengths"].numpy())
    return FactorizedPrior(tables, tensors[f"{prefix}.medians"].numpy())


def model_tensors(model: torch.nn.Module) -> dict:
    """A trained module's state as stored: no rANS buffers, convolution kernels in float16."""
    out = {}
    for name, t in model.state_dict().items():
        if any(b in name for b in RANS_BUFFERS):
            continue
        # standard strides even where channels_last left a 1x1 kernel "contiguous" with odd strides
        t = t.detach().cpu().clone(memory_format=torch.contiguous_format)
        out[name] = t.half() if t.is_floating_point() and t.dim() == 4 else t
    return out


def write_weights(path: Path, tensors: dict, config: dict, fmt: str, extra: dict | None = None) -> bytes:
    """Write ``tensors`` with their config, format tag and digest (atomically); returns the digest."""
    config_json = json.dumps(config, sort_keys=True)
    digest = tensors_digest(tensors, config_json)
    meta = {"format": fmt, "config": config_json, "digest": digest.hex(),
            "extra": json.dumps(extra or {}, sort_keys=True)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, force=True) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return digest


class WeightsFile:
    """What :func:`read_weights` found: tensors, config, digest and free-form metadata."""

    def __init__(self, tensors: dict, config: dict, digest: bytes, extra: dict):
        self.tensors, self.config, self.digest, self.extra = tensors, config, digest, extra

    def state(self, skip: tuple = ("coder.",)) -> dict:
        """Float32 state dict for ``load_state_dict`` (tensors whose names start with ``skip`` left out)."""
        return {k: v.float() if v.is_floating_point() else v for k, v in self.tensors.items()
                if not k.startswith(skip)}


def read_weights(path: Path, fmt: str, what: str) -> WeightsFile:
    """Read and verify a weights file of format ``fmt`` (``what`` names it in errors)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise InputError(f"weights file not found: {path}") from None
    except Exception as exc:
        raise InputError(f"{path} is not a readable safetensors weights file ({exc})") from None
    if meta.get("format") != fmt:
        raise ModelMismatchError(f"{path} is not an ncodec {what} (format {meta.get('format')!r})")
    config_json = meta.get("config", "")
    digest = tensors_digest(tensors, config_json)
    if digest.hex() != meta.get("digest"):
        raise ModelMismatchError(f"{path} is damaged: its tensors do not match the digest it records")
    try:
        config, extra = json.loads(config_json), json.loads(meta.get("extra", "{}"))
    except ValueError:
        raise ModelMismatchError(f"{path} has an unreadable config") from None
    return WeightsFile(tensors, config, digest, extra)
