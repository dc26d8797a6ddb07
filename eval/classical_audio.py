"""Classical audio codecs through PyAV (FFmpeg), for rate-distortion comparisons.

=======  ===========================================  ===========================================
name     encoder and container                        rate control
=======  ===========================================  ===========================================
opus     libopus in Ogg, application "audio"          constant bitrate (``vbr=off``)
aac      FFmpeg's native AAC-LC encoder in MP4 (.m4a)  average bitrate (``b``)
mp3      libmp3lame in MP3                             constant bitrate (``b``; LAME snaps it to
                                                      the nearest MPEG bitrate)
=======  ===========================================  ===========================================

Every size is the length of the real file (container overhead included), so the reported
kbps is the bitrate a user would get.  Decoders trim the encoders' priming samples where the
container says how many (Ogg pre-skip, MP4 edit list, LAME header); :func:`align` removes any
delay that remains, for every codec alike.
"""
from __future__ import annotations

import io

import av
import numpy as np

from ..audio.io import Resampler

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class PyAVAudioCodec:
    """One FFmpeg encoder: ``encode(samples, rate, kbps) -> bytes`` and ``decode(bytes, rate, n)``."""

    def __init__(self, name: str, fmt: str, encoder: str, options: dict, rates: tuple | None = None):
        self.name, self.format, self.encoder, self.options, self.rates = name, fmt, encoder, options, rates
        self.description = f"{encoder} in {fmt} via PyAV {av.__version__}"

    def _codec_rate(self, rate: int) -> int:
        if self.rates is None:
            return rate
        return min((r for r in self.rates if r >= rate), default=max(self.rates))

    def encode(self, x: np.ndarray, rate: int, kbps: float) -> bytes:
        """float32 ``(channels, n)`` at ``rate`` -> the encoded file's bytes."""
        layout = "mono" if len(x) == 1 else "stereo"
        codec_rate = self._codec_rate(rate)
        resample = Resampler(len(x), rate, codec_rate)
        x = np.concatenate([resample(x), resample(None)], axis=1)
        buf = io.BytesIO()
        with av.open(buf, "w", format=self.format) as out:
            stream = out.add_stream(self.encoder, rate=codec_rate, layout=layout)
            stream.bit_rate = int(kbps * 1000)
            stream.codec_context.options = dict(self.options)
            fmt = stream.codec_context.format.name
            size = stream.codec_context.frame_size or 1024
            pts = 0
            for s in range(0, x.shape[1], size):
                part = x[:, s:s + size]
                data = part.T.reshape(1, -1) if not fmt.endswith("p") else part
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(_as_format(data, fmt)), format=fmt,
                                                   layout=layout)
                frame.sample_rate, frame.pts = codec_rate, pts
                pts += part.shape[1]
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return buf.getvalue()

    def decode(self, data: bytes, rate: int, channels: int) -> np.ndarray:
        """The file's bytes -> float32 ``(channels, n)`` at ``rate``."""
        with av.open(io.BytesIO(data)) as f:
            stream = f.streams.audio[0]
            layout = "mono" if channels == 1 else "stereo"
            to_float = av.AudioResampler(format="fltp", layout=layout, rate=stream.codec_context.sample_rate)
            parts = [g.to_ndarray() for frame in f.decode(stream) for g in to_float.resample(frame)]
            codec_rate = stream.codec_context.sample_rate
        x = np.concatenate(parts, axis=1)
        resample = Resampler(channels, codec_rate, rate)
        return np.concatenate([resample(x), resample(None)], axis=1)


def _as_format(x: np.ndarray, fmt: str) -> np.ndarray:
    if fmt.startswith("s16"):
        return np.round(np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16)
    if fmt.startswith("s32"):
        return np.round(np.clip(x, -1, 1 - 2**-31) * 2**31).astype(np.int32)
    return x.astype(np.float32)


CODECS = {
    "opus": PyAVAudioCodec("opus", "ogg", "libopus", {"vbr": "off", "application": "audio"}, OPUS_RATES),
    "aac": PyAVAudioCodec("aac", "ipod", "aac", {}),
    "mp3": PyAVAudioCodec("mp3", "mp3", "libmp3lame", {}),
}


def align(ref: np.ndarray, test: np.ndarray, max_lag: int = 4096) -> np.ndarray:
    """``test`` shifted by the lag (within +-``max_lag``) that best correlates it with ``ref``,
    then cut or zero-padded to ``ref``'s length."""
    a, b = ref.mean(axis=0), test.mean(axis=0)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    lag = int(lags[np.argmax(corr[lags])])
    out = test[:, lag:] if lag >= 0 else np.pad(test, ((0, 0), (-lag, 0)))
    out = out[:, :ref.shape[1]]
    return np.pad(out, ((0, 0), (0, ref.shape[1] - out.shape[1])))
