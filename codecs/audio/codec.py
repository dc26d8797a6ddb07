"""The learned audio codec: samples <-> container bytes, chunk by chunk.

Input of any rate from 8 to 384 kHz is resampled to the model rate (48 kHz), stereo becomes
mid/side, and the MDCT frames are coded in chunks of ``chunk_frames`` frames (about 5 s: 500
at the shipped 480-sample hop; always whole hyper-latent groups of 4 frames and whole band
fill tiles).  A chunk is a run of *global* MDCT frames, so overlap-adding the decoded chunks
is exactly the inverse MDCT of the whole signal: chunking adds no seam, it only restarts the
entropy model's context at chunk edges.  Each chunk has its own quality, chosen by a secant
search on the exact coded size when a bitrate is asked for, against the chunk's share of it
corrected by what the chunks before it over- or underspent (:class:`RateReservoir`).  Speech is
quantized through a power law (:mod:`.powerlaw`), music linearly.  Memory stays bounded by one
chunk on both sides; the decoder restores the original rate (48 kHz for inputs above it), channel
count and length.

Container fields: ``rate`` (Hz), ``ch``, ``n`` (samples per channel at ``rate``), ``m``
(samples at the model rate), ``cf`` (frames per chunk), ``bf`` (the band fill layout of
:mod:`.bandfill`: 3, or 2 at low rates), ``pw`` (the power-law quantizer's exponent in
thousandths, :mod:`.powerlaw`; 1000 is linear), and per chunk ``q`` (quality x 1000), ``zl`` and
``yl`` (bytes of its z and y payloads in the ``z`` and ``y`` sections).  A chunk's ``y`` payload
holds its symbols, then its band fill levels, then its frame boost levels (:mod:`.frameboost`).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from ..container import Container
from ..entropy import EntropyCodingError, from_fixed
from ..errors import CorruptStreamError, InputError, UsageError
from . import bandfill, frameboost, postfilter, powerlaw
from .io import MAX_CHANNELS, MAX_RATE, MAX_SECONDS, MIN_RATE, Resampler, check_rate, coded_rate, resampled_length
from .mdct import frame_count, imdct, mdct

CHUNK_SECONDS = 5.0
RATE_TOLERANCE = 0.03       # the search stops within 3 % of each chunk's budget
RESERVOIR_SHARE = 0.25      # a chunk's budget moves by at most this share of it to repay earlier chunks' error
HEADER_BYTES = 64           # container header estimate charged to the first chunk's budget
CHUNK_FIELD_BYTES = 8       # per-chunk list entries (q, zl, yl)
MAX_SEARCH = 8


def _secant(size, budget: float, q: float, top: float) -> float:
    """Quality in [0, top] (to 1/1000) where the increasing function ``size`` meets ``budget``, by a
    bracketed secant search on log size; the nearest end of the range when it cannot be met."""
    tried = []
    for _ in range(MAX_SEARCH):
        q = min(max(round(q * 1000) / 1000, 0.0), top)
        if any(t[0] == q for t in tried):
            break
        tried.append((q, max(size(q), 1e-9)))
        if abs(tried[-1][1] - budget) <= RATE_TOLERANCE / 3 * budget:
            break
        over = [t[0] for t in tried if t[1] > budget]
        under = [t[0] for t in tried if t[1] <= budget]
        if (not over and q == top) or (not under and q == 0):
            break
        a, b = sorted(tried, key=lambda t: abs(math.log(t[1] / budget)))[:2] if len(tried) > 1 else (tried[0], None)
        if b is None or a[1] == b[1]:
            q = a[0] + math.log2(budget / a[1])          # about one quality step per doubling of size
        else:
            slope = (math.log(a[1]) - math.log(b[1])) / (a[0] - b[0])
            q = a[0] + math.log(budget / a[1]) / slope if slope > 0 else (a[0] + b[0]) / 2
        lo, hi = max(under, default=0.0), min(over, default=top)
        if not lo < q < hi:
            q = (lo + hi) / 2
    return min(tried, key=lambda t: abs(math.log(t[1] / budget)))[0]


class StreamSettings(NamedTuple):
    """What an encode fixes for every chunk of a stream."""

    band_fill: int      # the band fill layout (:mod:`.bandfill`)
    top_bin: int        # the MDCT bin of the input's Nyquist frequency
    exponent: int       # the power-law quantizer's exponent in thousandths (:mod:`.powerlaw`)


class RateReservoir:
    """Byte budgets of the chunks of a stream coded at ``kbps``: each chunk's share of the target,
    less what the chunks before it took beyond their shares (or plus what they left), by at most
    :data:`RESERVOIR_SHARE` of the share, so that the stream's size converges on the target
    instead of every chunk's search error adding up."""

    def __init__(self, kbps: float, rate: int):
        self.kbps, self.rate, self.planned = kbps, rate, 0.0

    def budget(self, valid: int, chunks: dict) -> float:
        """The next chunk's budget in bytes for ``valid`` samples at the model rate, given the
        ``chunks`` table of the chunks coded so far (their ``zl`` and ``yl`` byte counts)."""
        share = self.kbps * 125 * valid / self.rate - CHUNK_FIELD_BYTES - (HEADER_BYTES if not chunks["q"] else 0)
        overspent = sum(chunks["zl"]) + sum(chunks["yl"]) - self.planned
        self.planned += share
        limit = RESERVOIR_SHARE * max(share, 0.0)
        return max(share - min(max(overspent, -limit), limit), 1.0)


class DecodedChunk(NamedTuple):
    """A chunk as the decoder has it before the post-filter: the symbols, their log-scales and their
    reconstruction (dequantized and noise-filled), all (channels, bins, 1, frames) in the companded
    gain domain; the chunk's 0-based quality, its power-law exponent, the divisor (gains times frame
    boosts) that takes the expanded reconstruction back to MDCT coefficients, and how many low bins
    the post-filter shapes (0 for music)."""

    y_hat: torch.Tensor
    log_scale: torch.Tensor
    y_rec: torch.Tensor
    quality: float
    exponent: int
    divisor: torch.Tensor
    shaped_bins: int


class DecodedAudio(NamedTuple):
    """float32 samples ``(channels, n)`` and their sample rate."""

    samples: np.ndarray
    sample_rate: int


def as_audio_array(samples, sample_rate) -> np.ndarray:
    """Validate audio given as ``(channels, n)`` or ``(n,)`` (float in [-1, 1] or int16; numpy or
    torch) and return float32 ``(channels, n)``.  ``(n, channels)`` with at most 8 channels
    and more samples than channels is accepted too."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    a = np.asarray(samples)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise InputError(f"audio must be (channels, samples) or (samples,); got shape {a.shape}")
    if a.shape[0] > MAX_CHANNELS and a.shape[1] <= MAX_CHANNELS:
        a = a.T
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise InputError(f"sample rate must be an integer number of Hz, not {sample_rate!r}")
    check_rate(sample_rate, "")
    channels, n = a.shape
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(f"{channels} channels (ncodec audio takes 1 to {MAX_CHANNELS})")
    if n == 0:
        raise InputError("audio has zero samples")
    if n > MAX_SECONDS * sample_rate:
        raise InputError(f"{n / sample_rate / 3600:.1f} hours of audio exceeds the {MAX_SECONDS // 3600}-hour limit")
    if a.dtype == np.int16:
        return (a.astype(np.float32) / 32768)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"audio samples must be float or int16, not {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError("audio contains NaN or infinite samples")
    return a


def to_coded_channels(x: np.ndarray) -> np.ndarray:
    """Stereo -> (mid, side); other layouts as they are."""
    return np.stack([(x[0] + x[1]) / 2, (x[0] - x[1]) / 2]) if len(x) == 2 else x


def from_coded_channels(x: np.ndarray) -> np.ndarray:
    return np.stack([x[0] + x[1], x[0] - x[1]]) if len(x) == 2 else x


def _blocks(x: np.ndarray, size: int = 1 << 16) -> Iterator[np.ndarray]:
    for s in range(0, x.shape[1], size):
        yield x[:, s:s + size]


def encoder_input(audio, sample_rate, rate: int) -> tuple[np.ndarray, int, Iterator[np.ndarray]]:
    """What an audio encoder is given (samples and their rate, or a ``(samples, rate)`` pair), validated
    (:func:`as_audio_array`): the samples, their rate, and their blocks resampled to ``rate``."""
    if isinstance(audio, tuple) and len(audio) == 2 and sample_rate is None:
        audio, sample_rate = audio
    if sample_rate is None:
        raise UsageError("audio needs its sample rate: encode(samples, sample_rate)")
    x = as_audio_array(audio, sample_rate)
    resample = Resampler(len(x), sample_rate, rate)
    return x, sample_rate, (resample(b) for b in [*_blocks(x), None])


class AudioCodec:
    """MDCT + learned gains, hyperprior, context and dequantizer (one model, every rate)."""

    modality = "audio"

    def __init__(self, name: str, model, latent, digest: bytes, device: str = "cpu", description: str = "",
                 chunk_frames: int | None = None, noise_fill: float | None = None, postfilter: bool = True):
        """``chunk_frames`` (default: about :data:`CHUNK_SECONDS`) must be a multiple of :attr:`frame_step`;
        ``noise_fill`` decodes with this fixed fraction of the scale-derived zero-bin fill instead of the
        band levels a stream codes (0 = pure MSE decoding); ``postfilter=False`` decodes speech without
        the model's post-filter (:mod:`.postfilter`)."""
        self.name, self.model, self.latent, self.digest, self.description = name, model, latent, digest, description
        self.config = model.config
        self.hop, self.rate = self.config.hop, self.config.sample_rate
        self.frame_step = math.lcm(*(self._frame_step(mode) for mode in bandfill.TILE_SAMPLES))   # either layout fits
        if chunk_frames is None:
            chunk_frames = max(1, round(CHUNK_SECONDS * self.rate / self.hop / self.frame_step)) * self.frame_step
        if chunk_frames < self.frame_step or chunk_frames % self.frame_step:
            raise ValueError(f"chunk_frames must be a positive multiple of {self.frame_step}")
        self.chunk_frames, self.noise_fill, self.postfilter = chunk_frames, noise_fill, postfilter
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    @property
    def qualities(self) -> list[float]:
        """Quality levels 1 (smallest) .. levels; any real value in between works too."""
        return [float(q) for q in range(1, self.config.levels + 1)]

    # -- encoding ------------------------------------------------------------------------
    def encode(self, audio, sample_rate: int | None = None, kbps: float | None = None,
               quality: float | None = None, signal: str = "auto") -> bytes:
        """Compress ``(channels, n)`` samples at ``sample_rate`` (or a ``(samples, sample_rate)`` pair
        such as :class:`DecodedAudio`) to container bytes, at a target bitrate ``kbps`` or a fixed
        ``quality`` 1..levels (default: 24 kbps); ``signal`` "speech", "music" or "auto" (speech
        up to 16 kHz sampling) picks the quantizer (:mod:`.powerlaw`).  Input sampled above 48 kHz
        (up to 384 kHz) is coded, and decodes, at 48 kHz, as Opus does."""
        x, sample_rate, model_blocks = encoder_input(audio, sample_rate, self.rate)
        return self.encode_blocks(model_blocks, sample_rate, len(x), lambda: x.shape[1], kbps, quality,
                                  signal=signal).to_bytes()

    def _target(self, kbps, quality) -> tuple[float | None, float | None]:
        if kbps is not None and quality is not None:
            raise UsageError("give either a bitrate (--kbps) or a quality, not both")
        if quality is not None:
            q = float(quality)
            if not 1 <= q <= self.config.levels:
                raise UsageError(f"audio quality must be between 1 and {self.config.levels}")
            return None, q - 1
        kbps = 24.0 if kbps is None else float(kbps)
        if not 1 <= kbps <= 1024:
            raise UsageError("--kbps must be between 1 and 1024")
        return kbps, None

    def encode_blocks(self, blocks: Iterable[np.ndarray], rate: int, channels: int, source_samples: Callable[[], int],
                      kbps: float | None = None, quality: float | None = None,
                      progress: Callable[[int], None] | None = None, signal: str = "auto") -> Container:
        """Code a stream of model-rate ``(channels, n)`` blocks (``None`` entries are skipped);
        ``source_samples()`` gives the input's length at ``rate`` once the stream has ended (a
        stream of input above 48 kHz records 48 kHz and that length); the other arguments as for
        :meth:`encode`."""
        kbps, q_fixed = self._target(kbps, quality)
        hop, frames = self.hop, self.chunk_frames
        chunks = {"q": [], "zl": [], "yl": []}
        payload = {"z": [], "y": []}
        buf = np.zeros((channels, hop), np.float32)      # starts one hop before sample 0
        total, start = 0, (4.5, 0.0)
        per_channel = None if kbps is None else kbps / channels
        reservoir = None if kbps is None else RateReservoir(kbps, self.rate)
        settings = StreamSettings(bandfill.layout_for(per_channel, q_fixed), self._top_bin(rate),
                                  powerlaw.exponent_for(signal, rate, per_channel, q_fixed))
        step = self._frame_step(settings.band_fill)      # the tail chunk holds whole tiles of that layout
        for block in blocks:
            if block is None or not block.shape[1]:
                continue
            buf = np.concatenate([buf, to_coded_channels(block)], axis=1)
            total += block.shape[1]
            while buf.shape[1] >= (frames + 1) * hop:
                budget = reservoir.budget(frames * hop, chunks) if reservoir else None
                start = self._code_chunk(buf[:, :(frames + 1) * hop], budget, q_fixed, start, settings, chunks,
                                         payload)
                buf = buf[:, frames * hop:]
                if progress:
                    progress(frames * hop)
        if total == 0:
            raise InputError("audio has zero samples")
        remaining = frame_count(total, hop) - len(chunks["q"]) * frames
        while remaining > 0:                           # the tail: at most two chunks, the last padded
            size = min(frames, -(-remaining // step) * step)
            piece = np.pad(buf, ((0, 0), (0, max(0, (size + 1) * hop - buf.shape[1]))))[:, :(size + 1) * hop]
            valid = min(max(buf.shape[1] - hop, 0), size * hop)
            budget = reservoir.budget(valid, chunks) if reservoir else None
            start = self._code_chunk(piece, budget, q_fixed, start, settings, chunks, payload)
            buf, remaining = buf[:, size * hop:], remaining - size
            if progress:
                progress(valid)
        coded = coded_rate(rate)
        fields = {"rate": coded, "ch": channels, "n": resampled_length(source_samples(), rate, coded), "m": total,
                  "cf": frames,
                  "bf": settings.band_fill, "pw": settings.exponent, **chunks}
        return Container("audio", self.name, self.digest, fields,
                         {"z": b"".join(payload["z"]), "y": b"".join(payload["y"])})

    def _frame_step(self, band_fill: int) -> int:
        """Chunks (and the padded tail chunk) are multiples of this many frames: whole z groups (4 frames)
        and whole band fill tiles of layout ``band_fill``."""
        return math.lcm(4, bandfill.tile_frames(self.hop, band_fill))

    def _top_bin(self, rate: int) -> int:
        """The MDCT bin of the Nyquist frequency of input at ``rate`` (all bins at the model rate and above)."""
        return self.hop * min(rate, self.rate) // self.rate

    def _code_chunk(self, x: np.ndarray, budget: float | None, q_fixed, start: tuple[float, float],
                    settings: StreamSettings, chunks: dict, payload: dict) -> tuple[float, float]:
        """Code one chunk ((frames + 1) * hop samples starting one hop early) at a fixed quality or
        at the quality whose size meets ``budget`` bytes, starting the search from the last chunk's
        ``(quality, bytes per frame the estimate missed)``; returns this chunk's pair."""
        with torch.no_grad():
            coefs = mdct(torch.from_numpy(x).to(self.device), self.hop)
        boosts = frameboost.measure_levels(coefs)
        coefs = coefs * frameboost.factors(boosts, self.device)
        if q_fixed is not None:
            q, sections, missed = q_fixed, self._compress(coefs, q_fixed, boosts, settings), 0.0
        else:
            q, sections, missed = self._search(coefs, budget, *start, boosts, settings)
        chunks["q"].append(int(round(q * 1000)))
        for name in ("z", "y"):
            payload[name].append(sections[name])
            chunks[name + "l"].append(len(sections[name]))
        return q, missed

    def _quantizer_input(self, coefs: torch.Tensor, q: float, exponent: int) -> torch.Tensor:
        """What the quantizer rounds: the coefficients times the gains of quality ``q`` (as the stream
        records it, to 1/1000), companded (:mod:`.powerlaw`)."""
        q = round(q * 1000) / 1000
        with torch.no_grad():
            return powerlaw.compand(coefs * self.model.gains(torch.tensor([q], device=coefs.device)), exponent)

    def _compress(self, coefs: torch.Tensor, q: float, boosts: np.ndarray, settings: StreamSettings) -> dict:
        y = self._quantizer_input(coefs, q, settings.exponent)
        return self.latent.compress(y, boosts, settings.band_fill, settings.top_bin)[0]

    @torch.no_grad()
    def _estimate_bytes(self, coefs: torch.Tensor, q: float, exponent: int) -> float:
        """Ideal size of a chunk's symbols from the model's evaluation forward (several times cheaper
        than the exact path)."""
        _, _, likelihoods = self.model.latent_forward(self._quantizer_input(coefs, q, exponent))
        return sum(float(-torch.log2(lik).sum()) for lik in likelihoods) / 8

    def _search(self, coefs: torch.Tensor, budget: float, q: float, missed_per_frame: float, boosts: np.ndarray,
                settings: StreamSettings):
        """The quality whose exact chunk size is closest to ``budget`` bytes: a secant search on the
        float model's estimate plus what an exact encode added to it (the band fill and frame boost
        levels, which the estimate leaves out, and the coder's overhead), first as the last chunk's
        per frame, then as this chunk's (at most 3 exact encodes).  Returns the quality, the
        sections and this chunk's missed bytes per frame."""
        top, frames = float(self.config.levels - 1), coefs.shape[-1]
        extra, estimates, exact = missed_per_frame * frames, {}, {}

        def estimate(v: float) -> float:
            if v not in estimates:
                estimates[v] = self._estimate_bytes(coefs, v, settings.exponent)
            return estimates[v]

        for _ in range(3):
            q = _secant(lambda v: max(estimate(v) + extra, 1.0), budget, q, top)
            if q in exact:
                break
            sections = self._compress(coefs, q, boosts, settings)
            size = len(sections["z"]) + len(sections["y"])
            exact[q] = size, sections
            if abs(size - budget) <= RATE_TOLERANCE * budget or (q == top and size < budget) or (q == 0 and size > budget):
                break
            extra = size - estimate(q)
        q = min(exact, key=lambda v: abs(exact[v][0] - budget))
        return q, exact[q][1], (exact[q][0] - estimate(q)) / frames

    # -- decoding ------------------------------------------------------------------------
    def check_stream(self, c: Container) -> None:
        """Refuse streams made by another codec, model or weights, with a clear reason."""
        c.check_made_by("audio", self.name, self.digest)

    def stream_layout(self, c: Container) -> dict:
        """The validated fields of a stream: rate, ch, n, m, top_bin (the input's Nyquist bin), bf, pw, and
        per chunk (frames, q, z bytes, y bytes)."""
        self.check_stream(c)
        rate, ch, n, m, cf = (c.require(k) for k in ("rate", "ch", "n", "m", "cf"))
        q, zl, yl = (c.require(k, list) for k in ("q", "zl", "yl"))
        if not (MIN_RATE <= rate <= MAX_RATE and 1 <= ch <= MAX_CHANNELS and 1 <= n <= MAX_SECONDS * rate):
            raise CorruptStreamError(f"ncodec file declares invalid audio ({ch} channels, {n} samples at {rate} Hz)")
        if abs(m - n * self.rate / rate) > 2 * self.hop:
            raise CorruptStreamError("ncodec file declares inconsistent audio lengths")
        band_fill, exponent = c.require("bf"), c.require("pw")
        if band_fill not in bandfill.TILE_SAMPLES:
            raise CorruptStreamError("ncodec file declares an unknown noise-fill mode")
        if not powerlaw.MIN_EXPONENT <= exponent <= powerlaw.LINEAR:
            raise CorruptStreamError("ncodec file declares an invalid power-law exponent")
        step = self._frame_step(band_fill)
        if cf < step or cf % step or cf > 1 << 16:
            raise CorruptStreamError("ncodec file declares an invalid chunk size")
        total = frame_count(m, self.hop)
        count = -(-total // cf)
        if not len(q) == len(zl) == len(yl) == count:
            raise CorruptStreamError("ncodec file's chunk table does not match its length")
        if min(zl + yl) < 0 or sum(zl) != len(c.section("z")) or sum(yl) != len(c.section("y")):
            raise CorruptStreamError("ncodec file's chunk table does not match its sections")
        if not all(0 <= v <= 1000 * (self.config.levels - 1) for v in q):
            raise CorruptStreamError("ncodec file declares an invalid quality")
        last = total - (count - 1) * cf
        sizes = [cf] * (count - 1) + [-(-last // step) * step]
        return {"rate": rate, "ch": ch, "n": n, "m": m, "top_bin": self._top_bin(rate), "bf": band_fill, "pw": exponent,
                "chunks": list(zip(sizes, q, zl, yl))}

    def decode_blocks(self, c: Container) -> Iterator[np.ndarray]:
        """Model-rate ``(channels, n)`` blocks of a stream, chunk by chunk (``m`` samples in all)."""
        layout = self.stream_layout(c)
        hop, left = self.hop, layout["m"]
        tail = np.zeros((layout["ch"], hop), np.float32)
        z, y, zpos, ypos, first = c.section("z"), c.section("y"), 0, 0, True
        for index, (frames, qm, zl, yl) in enumerate(layout["chunks"]):
            sections = {"z": z[zpos:zpos + zl], "y": y[ypos:ypos + yl]}
            zpos, ypos = zpos + zl, ypos + yl
            try:
                x = self._decode_chunk(sections, frames, qm / 1000, index, layout)
            except EntropyCodingError as exc:
                raise CorruptStreamError(f"ncodec file is corrupt: {exc}") from None
            x[:, :hop] += tail
            tail = x[:, -hop:]
            out = x[:, hop if first else 0:-hop]
            first = False
            out = out[:, :left]
            left -= out.shape[1]
            if out.shape[1]:
                yield from_coded_channels(out)

    def _decode_chunk(self, sections: dict, frames: int, q: float, seed: int, layout: dict) -> np.ndarray:
        with torch.no_grad():
            return imdct(self.coefficients(self.decoded_chunk(sections, frames, q, seed, layout)), self.hop).cpu().numpy()

    def decoded_chunk(self, sections: dict, frames: int, q: float, seed: int, layout: dict) -> DecodedChunk:
        """What the decoder reconstructs of one chunk before the post-filter (see :class:`DecodedChunk`)."""
        shape = (layout["ch"], self.hop, 1, frames)
        y_sym, log_scale, fraction, boosts = self.latent.decompress(sections, shape, layout["bf"], layout["top_bin"])
        fill = fraction.to(self.device) if self.noise_fill is None else self.noise_fill
        with torch.no_grad():
            y_hat = torch.from_numpy(y_sym).float().to(self.device)
            log_scale = from_fixed(log_scale).to(self.device)
            gain = self.model.gains(torch.tensor([q], device=self.device))
            y_rec = self.model.reconstruct(y_hat, log_scale, fill, torch.Generator().manual_seed(seed))
            divisor = gain * frameboost.factors(boosts, self.device)
        shaped = postfilter.shaped_bins(self.hop, self.rate, layout["top_bin"]) if layout["pw"] != powerlaw.LINEAR else 0
        return DecodedChunk(y_hat, log_scale, y_rec, q, layout["pw"], divisor, shaped)

    def coefficients(self, chunk: DecodedChunk) -> torch.Tensor:
        """A decoded chunk's MDCT coefficients: its reconstruction through the model's post-filter (if it
        has one and :attr:`postfilter` is on), expanded (:mod:`.powerlaw`) and divided by its gains."""
        y = chunk.y_rec
        if self.postfilter and self.model.postfilter is not None:
            y = postfilter.apply(self.model.postfilter, chunk.y_hat, chunk.log_scale, y, chunk.quality,
                                 self.config.levels, chunk.shaped_bins)
        return powerlaw.expand(y, chunk.exponent) / chunk.divisor

    def decode(self, data: bytes | Container) -> DecodedAudio:
        """Container bytes -> :class:`DecodedAudio` (float32 ``(channels, n)`` at the original rate)."""
        c = data if isinstance(data, Container) else Container.from_bytes(data)
        layout = self.stream_layout(c)
        resample = Resampler(layout["ch"], self.rate, layout["rate"])
        parts = [resample(b) for b in self.decode_blocks(c)] + [resample(None)]
        x = np.concatenate(parts, axis=1)[:, :layout["n"]]
        if x.shape[1] < layout["n"]:
            x = np.pad(x, ((0, 0), (0, layout["n"] - x.shape[1])))
        return DecodedAudio(x, layout["rate"])
