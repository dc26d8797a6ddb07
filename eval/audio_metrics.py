"""Audio quality metrics: SI-SDR, a multi-resolution mel distance, and (when their packages are
installed) ViSQOL v3 (visqol-python, audio and speech modes), PESQ wide-band and STOI.

Inputs are float ``(channels, n)`` arrays of the same shape at one sample rate.  ViSQOL, PESQ
and STOI are optional: :func:`optional_metric_missing` says why one cannot run, and callers
skip it with that note.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torchaudio

from ..audio.mel import log_mel_l1


def _pair(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, test = np.atleast_2d(ref).astype(np.float64), np.atleast_2d(test).astype(np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {test.shape}")
    return ref, test


def si_sdr(ref: np.ndarray, test: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), zero-mean, over all channels together."""
    ref, test = _pair(ref, test)
    ref, test = ref - ref.mean(axis=1, keepdims=True), test - test.mean(axis=1, keepdims=True)
    energy = float((ref * ref).sum())
    if energy == 0:
        return float("nan")
    target = float((test * ref).sum()) / energy * ref
    noise = float(((test - target) ** 2).sum())
    return float("inf") if noise == 0 else 10 * math.log10(float((target ** 2).sum()) / noise)


def mel_distance(ref: np.ndarray, test: np.ndarray, rate: int) -> float:
    """Multi-resolution mel distance: mean over windows of 256..2048 samples of the mean absolute
    difference of log10 mel magnitudes (floor 1e-5; :func:`ncodec.audio.mel.log_mel_l1`, the term
    the audio model trains on).  0 for identical signals; lower is better."""
    ref, test = _pair(ref, test)
    return float(log_mel_l1(torch.from_numpy(ref).float(), torch.from_numpy(test).float(), rate))


def optional_metric_missing(name: str) -> str | None:
    """Why ``visqol`` / ``pesq`` / ``stoi`` cannot run here, or None when it can."""
    module = {"visqol": "visqol", "pesq": "pesq", "stoi": "pystoi"}[name]
    package = {"visqol": "visqol-python", "pesq": "pesq", "stoi": "pystoi"}[name]
    try:
        __import__(module)
    except ImportError:
        return f"{name} skipped: the {package} package is not installed (pip install {package})"
    return None


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(x)).float(), rate, target).double().numpy()


@functools.lru_cache(maxsize=2)
def _visqol(mode: str):
    import logging

    from visqol import VisqolApi

    logging.getLogger("visqol").setLevel(logging.ERROR)
    api = VisqolApi()
    api.create(mode=mode, **({"use_lattice_model": False} if mode == "speech" else {}))
    return api


def visqol(ref: np.ndarray, test: np.ndarray, rate: int, mode: str) -> float:
    """ViSQOL v3 MOS-LQO of the channel mean: ``mode`` "audio" (at 48 kHz) or "speech" (at 16 kHz,
    polynomial mapping)."""
    ref, test = _pair(ref, test)
    target = 48000 if mode == "audio" else 16000
    r, t = (_resample(a.mean(axis=0), rate, target) for a in (ref, test))
    return float(_visqol(mode).measure_from_arrays(r, t, target).moslqo)


def pesq_wb(ref: np.ndarray, test: np.ndarray, rate: int) -> float:
    """PESQ wide-band MOS-LQO of the channel mean at 16 kHz (ITU-T P.862.2)."""
    from pesq import pesq

    ref, test = _pair(ref, test)
    r, t = (_resample(a.mean(axis=0), rate, 16000) for a in (ref, test))
    return float(pesq(16000, r, t, "wb"))


def stoi(ref: np.ndarray, test: np.ndarray, rate: int) -> float:
    """STOI (0..1) of the channel mean at 16 kHz."""
    from pystoi import stoi as _stoi

    ref, test = _pair(ref, test)
    r, t = (_resample(a.mean(axis=0), rate, 16000) for a in (ref, test))
    return float(_stoi(r, t, 16000))
