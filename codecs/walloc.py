"""WaLLoC (Wavelet Learned Lossy Compression, Jacobellis & Yadwadkar) for images and audio, and its
latents as features for other models (compressed-domain learning).

One model (:class:`ncodec.image.models.WallocModel`) serves both: wavelet packets, a linear encoder
to a few latent channels, gain units and one factorized prior per quality, a convolutional decoder
and the inverse packets.  Images use the image codec's machinery (``--codec walloc`` on a photo);
audio has :class:`WallocAudioCodec` (``--codec walloc`` on a sound file): input of any rate is
resampled to the model's 16 kHz, stereo becomes mid and side, each channel is coded on its own.

The latent is small and of fixed shape, so other models can learn on it without decoding:

* :func:`latents` runs the encoder alone (wavelet packets and one linear layer) on an image or a
  sound and returns the quantised latent, as the stream would hold it;
* :func:`stream_latents` reads that latent out of an ``.ncz`` stream with the entropy decoder alone
  (no synthesis).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .container import Container
from .entropy.tiling import run_tiled
from .errors import CorruptStreamError, InputError, UsageError

AUDIO_BLOCK = 1 << 16          # samples per decoded block (model rate)
SEGMENT_GAIN_DB = (-24.0, 6.0)  # training: random level of each audio segment


class AudioSegments:
    """Training data of the audio model: every file under a folder at the model rate (stereo as mid
    and side, each a mono signal), held in RAM, drawn as random segments with random level and
    polarity.  Files the audio evaluation holds out are never read."""

    def __init__(self, folder: Path, samples: int, rate: int, rng: random.Random):
        from tqdm import tqdm

        from .audio.codec import to_coded_channels
        from .audio.io import read_audio
        from .audio.train import HELD_OUT, training_files

        self.signals = []
        for path in tqdm(training_files(Path(folder), set(HELD_OUT)), desc="reading audio", unit="file", leave=False):
            x, _ = read_audio(path, rate)
            self.signals.extend(torch.from_numpy(np.ascontiguousarray(c)) for c in to_coded_channels(x))
        self.values, self.rng = samples, rng

    def batch(self, n: int) -> torch.Tensor:
        """``n`` segments, float (N, 1, 1, samples)."""
        out = torch.zeros(n, 1, 1, self.values)
        weights = [len(s) for s in self.signals]
        for i in range(n):
            sig = self.rng.choices(self.signals, weights)[0]
            start = self.rng.randrange(max(len(sig) - self.values, 0) + 1)
            piece = sig[start:start + self.values]
            gain = 10 ** (self.rng.uniform(*SEGMENT_GAIN_DB) / 20) * self.rng.choice((-1, 1))
            out[i, 0, 0, :len(piece)] = piece * gain
        return out


class WallocAudioCodec:
    """WaLLoC for audio: samples <-> container bytes.  Integer qualities 1..levels (one density each);
    a bitrate picks the highest quality whose stream fits it.

    Container fields: ``rate`` (Hz, as decoded), ``ch``, ``n`` (samples per channel at ``rate``), ``m``
    (samples at the model rate) and ``q`` (quality x 1000); one ``y`` section holds the latent of every
    channel."""

    modality = "audio"

    def __init__(self, name: str, model, latent, digest: bytes, device: str = "cpu", description: str = ""):
        self.name, self.model, self.latent, self.digest, self.description = name, model, latent, digest, description
        self.config = model.config
        self.rate = int(self.config.extra["sample_rate"])
        self.stride = model.stride
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    @property
    def qualities(self) -> list[float]:
        return [float(q) for q in range(1, self.config.levels + 1)]

    def _tiled(self, fn, x: torch.Tensor, scale: float) -> torch.Tensor:
        """``fn`` over (C, 1, 1, L) signals or latents, tile by tile along L (``scale``: output/input length)."""
        (_, tile), (_, margin) = self.model.tiling
        unit = self.stride if scale < 1 else 1
        with torch.no_grad():
            return run_tiled(fn, x.to(self.device), (1, scale), (1, tile * unit), (0, margin * unit))

    def _gains(self, level: int):
        return self.model.gains(torch.tensor([float(level)], device=self.device))

    def analyse(self, x: np.ndarray, level: int) -> torch.Tensor:
        """The gain-scaled latent (C, M, 1, L / stride) of model-rate coded channels ``x`` (C, L), L a
        multiple of the stride."""
        gain, _ = self._gains(level)
        return self._tiled(self.model.g_a, torch.from_numpy(x)[:, None, None], 1 / self.stride) * gain

    def synthesise(self, y_hat: torch.Tensor, level: int) -> np.ndarray:
        _, inv_gain = self._gains(level)
        return self._tiled(self.model.g_s, y_hat.to(self.device) * inv_gain, self.stride)[:, 0, 0].cpu().numpy()

    # -- encoding ------------------------------------------------------------------------
    def encode(self, audio, sample_rate: int | None = None, kbps: float | None = None,
               quality: float | None = None, signal: str = "auto") -> bytes:
        """Compress ``(channels, n)`` samples at ``sample_rate`` (or a ``(samples, rate)`` pair) at a
        quality 1..levels or the highest one that fits ``kbps`` (default: the highest quality).
        ``signal`` is accepted for the audio modality's common interface and has no effect."""
        from .audio.codec import encoder_input

        x, sample_rate, blocks = encoder_input(audio, sample_rate, self.rate)
        return self.encode_blocks(blocks, sample_rate, len(x), lambda: x.shape[1], kbps, quality).to_bytes()

    def _levels(self, kbps, quality) -> list[int]:
        """The quality levels (0-based) to try, best first."""
        if kbps is not None and quality is not None:
            raise UsageError("give either a bitrate (--kbps) or a quality, not both")
        levels = self.config.levels
        if quality is not None:
            q = float(quality)
            if q != int(q) or not 1 <= q <= levels:
                raise UsageError(f"the walloc audio codec takes integer qualities 1 to {levels}")
            return [int(q) - 1]
        if kbps is not None and not 1 <= float(kbps) <= 1024:
            raise UsageError("--kbps must be between 1 and 1024")
        return list(range(levels - 1, -1, -1))

    def encode_blocks(self, blocks: Iterable[np.ndarray], rate: int, channels: int, source_samples: Callable[[], int],
                      kbps: float | None = None, quality: float | None = None,
                      progress: Callable[[int], None] | None = None, signal: str = "auto") -> Container:
        """Code a stream of model-rate ``(channels, n)`` blocks (held whole: about 4 bytes per sample
        and channel at 16 kHz) at ``rate``'s coded rate; arguments as for :meth:`encode`."""
        from .audio.codec import to_coded_channels
        from .audio.io import coded_rate, resampled_length

        levels = self._levels(kbps, quality)
        parts = [b for b in blocks if b is not None and b.shape[1]]
        if not parts:
            raise InputError("audio has zero samples")
        x = to_coded_channels(np.concatenate(parts, axis=1)).astype(np.float32)
        m = x.shape[1]
        if progress:
            progress(m)
        x = np.pad(x, ((0, 0), (0, (-m) % self.stride)))
        coded = coded_rate(rate)
        fields = {"rate": coded, "ch": channels, "n": resampled_length(source_samples(), rate, coded), "m": m}
        budget = None if kbps is None else float(kbps) * 1000 / 8 * m / self.rate
        for level in levels:
            sections, _ = self.latent.compress(self.analyse(x, level), level)
            c = Container("audio", self.name, self.digest, {**fields, "q": 1000 * (level + 1)}, sections)
            if budget is None or len(c.to_bytes()) <= budget:
                break
        return c

    # -- decoding ------------------------------------------------------------------------
    def check_stream(self, c: Container) -> None:
        c.check_made_by("audio", self.name, self.digest)

    def stream_layout(self, c: Container) -> dict:
        """The validated fields of a stream: rate, ch, n, m and the 0-based quality level."""
        from .audio.codec import MAX_CHANNELS, MAX_RATE, MAX_SECONDS, MIN_RATE   # the audio codecs' limits

        self.check_stream(c)
        rate, ch, n, m, q = (c.require(k) for k in ("rate", "ch", "n", "m", "q"))
        if not (MIN_RATE <= rate <= MAX_RATE and 1 <= ch <= MAX_CHANNELS and 1 <= n <= MAX_SECONDS * rate):
            raise CorruptStreamError(f"ncodec file declares invalid audio ({ch} channels, {n} samples at {rate} Hz)")
        if abs(m - n * self.rate / rate) > self.stride + 2:
            raise CorruptStreamError("ncodec file declares inconsistent audio lengths")
        if q % 1000 or not 1 <= q // 1000 <= self.config.levels:
            raise CorruptStreamError("ncodec file declares an invalid quality")
        return {"rate": rate, "ch": ch, "n": n, "m": m, "level": q // 1000 - 1}

    def latent_shape(self, layout: dict) -> tuple:
        return layout["ch"], self.config.M, 1, -(-layout["m"] // self.stride)

    def decode_latent(self, c: Container, layout: dict) -> torch.Tensor:
        """The stream's gain-scaled quantised latent (C, M, 1, L): the entropy decoder alone."""
        from .image.codec import stream_errors

        with stream_errors():
            return self.latent.decompress(c.sections, self.latent_shape(layout), level=layout["level"])

    def decode_blocks(self, c: Container) -> Iterator[np.ndarray]:
        """Model-rate ``(channels, n)`` blocks of a stream (``m`` samples in all)."""
        from .audio.codec import from_coded_channels

        layout = self.stream_layout(c)
        x = from_coded_channels(self.synthesise(self.decode_latent(c, layout), layout["level"]))[:, :layout["m"]]
        for s in range(0, x.shape[1], AUDIO_BLOCK):
            yield np.ascontiguousarray(x[:, s:s + AUDIO_BLOCK])

    def decode(self, data: bytes | Container):
        """Container bytes -> :class:`~ncodec.audio.codec.DecodedAudio` at the original rate (at most 48 kHz)."""
        from .audio.codec import DecodedAudio
        from .audio.io import Resampler

        c = data if isinstance(data, Container) else Container.from_bytes(data)
        layout = self.stream_layout(c)
        resample = Resampler(layout["ch"], self.rate, layout["rate"])
        parts = [resample(b) for b in self.decode_blocks(c)] + [resample(None)]
        x = np.concatenate(parts, axis=1)[:, :layout["n"]]
        return DecodedAudio(np.pad(x, ((0, 0), (0, layout["n"] - x.shape[1]))), layout["rate"])

    def describe(self, layout: dict) -> dict:
        return {"quality": layout["level"] + 1, "coded_rate": self.rate}


# -- latents as features ---------------------------------------------------------------------

def latents(data, sample_rate: int | None = None, quality: float | None = None, device: str | None = None,
            weights: str | Path | None = None) -> torch.Tensor:
    """WaLLoC's quantised latent of an image (HxWxC uint8 array or CxHxW float tensor in [0, 1]; give no
    ``sample_rate``) or of audio (``(channels, n)`` samples with their ``sample_rate``), computed by the
    encoder alone: float32 (M, H/8, W/8) for an image (RGB; grey as RGB, alpha ignored), (C, M, n') for
    audio at the model's 16 kHz, n' = ceil(n * 16000 / rate / 64), stereo as mid and side.  ``quality``
    1..levels (default: the highest) sets the quantisation step; the values are what a stream holds
    (before the inverse gains), so :func:`stream_latents` of that stream returns the same tensor."""
    from .api import load_codec

    if sample_rate is not None:
        from .audio.codec import encoder_input, to_coded_channels

        codec = load_codec("walloc", device, modality="audio", **({"weights": weights} if weights else {}))
        _, _, blocks = encoder_input(data, sample_rate, codec.rate)
        x = to_coded_channels(np.concatenate(list(blocks), axis=1)).astype(np.float32)
        level = codec._levels(None, quality)[0]
        n = -(-x.shape[1] // codec.stride)
        y = codec.analyse(np.pad(x, ((0, 0), (0, n * codec.stride - x.shape[1]))), level)
        return _rounded(codec.latent.priors[level], y)[:, :, 0]
    from .image.codec import as_image_array

    codec = load_codec("walloc", device, modality="image", **({"weights": weights} if weights else {}))
    q = codec._quality(quality)
    arr, channels = as_image_array(data)
    h, w = arr.shape[:2]
    rgb = np.repeat(arr, 3, axis=2) if channels == 1 else arr[:, :, :3]
    with torch.no_grad():
        y = codec.analyse(codec.padded_input(rgb), q)
    return _rounded(codec.latent.priors[int(q) - 1], y)[0, :, :-(-h // codec.stride), :-(-w // codec.stride)]


def _rounded(prior, y: torch.Tensor) -> torch.Tensor:
    """A gain-scaled latent rounded as the coder rounds it (around the prior's medians)."""
    from .entropy import from_fixed

    return from_fixed(prior.dequantize_fixed(prior.quantize(y.cpu()))).float()


def stream_latents(data: bytes, device: str | None = None) -> torch.Tensor:
    """The quantised latent held in a ``walloc`` stream (image or audio), read by the entropy decoder
    alone, without the synthesis: the tensor :func:`latents` gives for the same input and quality
    (an image's cropped to its size in latent positions)."""
    from .api import load_codec

    c = Container.from_bytes(data)
    if c.model != "walloc" or c.codec not in ("image", "audio"):
        raise UsageError(f"stream_latents reads walloc streams; this one was made by {c.codec} codec {c.model!r}")
    codec = load_codec("walloc", device, modality=c.codec)
    if c.codec == "audio":
        return codec.decode_latent(c, codec.stream_layout(c))[:, :, 0].float()
    from .image.codec import stream_errors

    w, h, _, q = codec.stream_header(c)
    if q != int(q):
        raise CorruptStreamError("ncodec file declares an invalid quality")
    with stream_errors():
        y = codec.latent.decompress(c.sections, codec.latent_shape(h, w), level=int(q) - 1)
    return y[0, :, :-(-h // codec.stride), :-(-w // codec.stride)].float()
