"""Multi-resolution log-mel L1: the perceptual term of the audio training loss and, unchanged, the
mel distance that ``ncodec eval audio`` reports (:func:`ncodec.eval.audio_metrics.mel_distance`).

For windows of 256..2048 samples (hop a quarter window, up to 80 mel bands, magnitude
spectra), the mean absolute difference of log10 mel magnitudes floored at 1e-5, averaged over
the windows.  Differentiable (torchaudio), so training can back-propagate through it.
"""
from __future__ import annotations

import functools

import torch
import torchaudio

MEL_FFTS = (256, 512, 1024, 2048)
MEL_EPS = 1e-5


@functools.lru_cache(maxsize=16)
def _mel(rate: int, n_fft: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(sample_rate=rate, n_fft=n_fft, hop_length=n_fft // 4,
                                                n_mels=min(80, n_fft // 4), power=1.0, center=True)


def log_mel_l1(ref: torch.Tensor, test: torch.Tensor, rate: int) -> torch.Tensor:
    """Mean over windows of the mean |log10 mel(ref) - log10 mel(test)| of float ``(..., n)``
    waveforms at ``rate``; a scalar tensor, 0 for identical signals."""
    total = ref.new_zeros(())
    for n_fft in MEL_FFTS:
        mel = _mel(rate, n_fft).to(ref.device)
        total = total + (torch.log10(mel(ref).clamp_min(MEL_EPS)) - torch.log10(mel(test).clamp_min(MEL_EPS))).abs().mean()
    return total / len(MEL_FFTS)
