"""Power-law quantization: the gain-domain coefficients are companded before rounding and
expanded after the decoder's reconstruction.

The encoder rounds ``sign(y) K ** (1 - p) |y| ** p`` instead of ``y`` (``p`` < 1; AAC and MP3
quantize ``|x| ** 0.75`` for the same reason), and the decoder inverts that on its reconstruction
(dequantized symbols and noise fill, in the companded domain).  The quantizer step then grows
with a coefficient's magnitude, as ``(|y| / K) ** (1 - p)``: the weak coefficients of a frame (its quiet
bands; a speech pause's background noise) are coded relatively finer and fewer of them become
zeros plus noise fill, the loud ones coarser.  The pivot ``K`` (:data:`PIVOT`), where the step
is the linear one's, only shifts the quality scale: it keeps a quality's bitrate near the linear
quantizer's, so the top quality still reaches high rates.  The frame boost (:mod:`.frameboost`) makes the
noise follow the level over time; the power law makes it follow the spectrum within each frame,
per coefficient and with no side information.

That is a gain on speech and a trade on music.  On the training files (first 10 s), at 64 kbps
the mel distance of VCTK and LibriSpeech speech fell by 6-12 % (SI-SDR -0.5 to +0.1 dB); on music it
fell by 1-7 % too, but ViSQOL fell by up to 0.1 at 24-64 kbps (the bits the weak coefficients
take come from the loud ones, which mask them in music and not in a speech pause).  So the
encoder uses it for speech only: the caller says which the input is (``signal``), or "auto"
takes inputs sampled at :data:`SPEECH_MAX_RATE` or less for speech (a 16 kHz file is nearly always
voice; the codec cannot use more than 8 kHz of bandwidth from it anyway).  The exponent is 0.85
from 32 kbps per coded channel and 0.9 below, where it trades: at 6-12 kbps PESQ rose by 0.05 on
average (-0.03 to +0.19) and the mel distance by 0.5-0.9 % (the model was trained linear, so its
entropy model sees companded values it was not trained on).

A stream names its exponent (field ``pw``, thousandths; :data:`LINEAR` is the linear quantizer).
"""
from __future__ import annotations

import torch

from ..errors import UsageError

SIGNALS = ("auto", "speech", "music")
SPEECH_MAX_RATE = 16000      # "auto": inputs sampled at this rate or less are speech
LINEAR = 1000                # thousandths: the linear quantizer (music)
# speech: (the lowest bitrate per coded channel, exponent in thousandths), highest rate first
EXPONENTS = ((32.0, 850), (0.0, 900))
QUALITY_EXPONENTS = ((8.0, 850), (0.0, 900))   # the same for a fixed 0-based quality (about 32 kbps on speech)
MIN_EXPONENT = 500           # the smallest exponent a stream may declare
# Magnitude (in linear quantizer steps) that companding leaves unchanged.  Top quality on the first
# 10 s of p229_003: 76.7 kbps with pivot 16, 66.9 with pivot 1, 74.6 linear.
PIVOT = 16.0


def exponent_for(signal: str, rate: int, kbps_per_channel: float | None, quality: float | None) -> int:
    """The exponent (thousandths) an encode writes for ``signal`` ("auto", "speech" or "music")
    sampled at ``rate`` Hz, at a bitrate target per coded channel or a fixed 0-based quality."""
    if signal not in SIGNALS:
        raise UsageError(f"signal must be one of {', '.join(SIGNALS)}, not {signal!r}")
    if signal == "music" or (signal == "auto" and rate > SPEECH_MAX_RATE):
        return LINEAR
    value, table = (quality, QUALITY_EXPONENTS) if quality is not None else (kbps_per_channel, EXPONENTS)
    return next(p for lowest, p in table if value >= lowest)


def compand(y: torch.Tensor, exponent: int) -> torch.Tensor:
    """``sign(y) K ** (1 - p) |y| ** p`` for the exponent ``p`` in thousandths and ``K`` = :data:`PIVOT`
    (the encoder's side)."""
    if exponent == LINEAR:
        return y
    p = exponent / 1000
    return torch.sign(y) * PIVOT ** (1 - p) * y.abs() ** p


def expand(y: torch.Tensor, exponent: int) -> torch.Tensor:
    """The inverse of :func:`compand` (the decoder's side)."""
    if exponent == LINEAR:
        return y
    p = exponent / 1000
    return torch.sign(y) * (y.abs() / PIVOT ** (1 - p)) ** (1 / p)
