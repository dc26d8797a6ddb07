"""How the file API and the command line reach the audio codec (the modality interface that
:mod:`ncodec.registry` describes)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..container import Container
from ..errors import ModelMismatchError, UsageError
from ..fileio import atomic_output, check_output, write_bytes

CODECS = {"mdct": "MDCT + learned gains, scale hyperprior with frame context, learned dequantizer, speech "
                  "post-filter; 8-48 kHz (up to 384 kHz coded at 48), 1-8 channels, --kbps or --quality 1-12",
          "walloc": "WaLLoC: wavelet packets, a linear encoder, factorized prior; coded at 16 kHz (speech), "
                    "integer --quality 1-6 or the highest that fits --kbps; latents usable without decoding "
                    "(ncodec.walloc)"}
DEFAULT_CODEC = "mdct"
WALLOC = "walloc"
WEIGHT_FILES = {name: f"audio-{name}.safetensors" for name in CODECS}
DECODED_SUFFIX = ".wav"
COMMANDS = {"train": "ncodec.audio.train", "eval": "ncodec.eval.rd_audio"}


def encode_options() -> list[tuple[str, dict]]:
    """Flags of ``ncodec encode`` for audio (``--quality`` is common to every modality)."""
    from .powerlaw import SIGNALS, SPEECH_MAX_RATE

    return [
        ("--kbps", {"type": float, "help": "audio: target bitrate in kbit/s (default 24; or give --quality 1-12)"}),
        ("--signal", {"choices": SIGNALS,
                      "help": "audio: speech codes pauses and quiet bands finer (a power-law quantizer), "
                              "music keeps the linear one; auto (default): speech for inputs sampled "
                              f"at {SPEECH_MAX_RATE // 1000} kHz or less"}),
    ]


def decode_options() -> list[tuple[str, dict]]:
    """Flags of ``ncodec decode`` for audio: none."""
    return []


def accepts(path: Path) -> bool:
    """True for audio files (by suffix)."""
    from .io import READ_SUFFIXES

    return Path(path).suffix.lower() in READ_SUFFIXES


@lru_cache(maxsize=4)
def _load(name: str, device: str, weights: str | None):
    from ..registry import assets_dir
    from .codec import AudioCodec
    from .latent import AudioLatentCodec
    from .weights import load_weights

    if name not in CODECS:
        raise UsageError(f"unknown audio codec {name!r}; available: {', '.join(CODECS)}")
    path = Path(weights) if weights else assets_dir() / WEIGHT_FILES[name]
    if name == WALLOC:
        from ..image.codec import latent_codec_for
        from ..image.weights import load_weights as load_transform_weights
        from ..walloc import WallocAudioCodec

        loaded = load_transform_weights(path)
        if loaded.model.config.dims != 1:
            raise ModelMismatchError(f"{path} holds an image model, not the audio WaLLoC model")
        return WallocAudioCodec(name, loaded.model, latent_codec_for(loaded.model, loaded.priors), loaded.digest,
                                device=device, description=CODECS[name])
    loaded = load_weights(path)
    return AudioCodec(name, loaded.model, AudioLatentCodec(loaded.model, loaded.z_prior), loaded.digest,
                      device=device, description=CODECS[name])


def load_codec(name: str, device: str, weights: str | Path | None = None):
    """The :class:`~ncodec.audio.codec.AudioCodec` (``mdct``) or :class:`~ncodec.walloc.WallocAudioCodec`
    (``walloc``) of the shipped model, or of another weights file."""
    return _load(name, device, str(weights) if weights else None)


def _progress(total_seconds: float, desc: str):
    from tqdm import tqdm

    return tqdm(total=round(total_seconds, 1), desc=desc, unit="s", leave=False, disable=total_seconds < 60,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")


def encode_file(src: Path, dst: Path, codec: str | None, device: str, force: bool, options: dict) -> dict:
    """Encode one audio file (streamed: memory stays bounded for long files) into an ``.ncz`` file."""
    from .io import AudioReader

    check_output(dst, force)
    audio = load_codec(codec or DEFAULT_CODEC, device)
    reader = AudioReader(src, audio.rate)
    with _progress(reader.samples / reader.rate, "encoding") as bar:
        c = audio.encode_blocks(reader, reader.rate, reader.channels, lambda: reader.samples_read,
                                kbps=options.get("kbps"), quality=options.get("quality"),
                                progress=lambda n: bar.update(n / audio.rate), signal=options.get("signal") or "auto")
    data = c.to_bytes()
    write_bytes(dst, data, force)
    rate = c.fields["rate"]
    seconds = c.fields["n"] / rate
    kbps = 8 * len(data) / seconds / 1000
    note = f" (input at {reader.rate} Hz, coded and decoded at {rate} Hz)" if rate != reader.rate else ""
    return {"bytes": len(data), "kbps": kbps, "seconds": seconds, "rate": rate, "channels": reader.channels,
            "summary": f"{len(data)} bytes, {kbps:.2f} kbps, {seconds:.2f} s, {reader.channels} ch @ {rate} Hz{note}"}


def _codec_for(container: Container, device: str):
    if container.model not in CODECS:
        raise ModelMismatchError(f"stream needs audio model {container.model!r}, which this ncodec does not ship")
    return load_codec(container.model, device)


def decode(container: Container, device: str):
    """Container -> :class:`~ncodec.audio.codec.DecodedAudio` (samples, sample_rate)."""
    return _codec_for(container, device).decode(container)


def decode_file(container: Container, dst: Path, device: str, force: bool) -> str:
    """Decode to a 16-bit WAV or FLAC file at the original rate, chunk by chunk, atomically."""
    from .io import AudioWriter, output_format

    output_format(dst)
    check_output(dst, force)
    audio = _codec_for(container, device)
    layout = audio.stream_layout(container)
    with atomic_output(Path(dst), force) as tmp, _progress(layout["n"] / layout["rate"], "decoding") as bar:
        writer = AudioWriter(tmp, layout["rate"], layout["ch"], layout["n"], rate_in=audio.rate)
        for block in audio.decode_blocks(container):
            writer.write(block)
            bar.update(block.shape[1] / audio.rate)
        writer.close()
    return f"{layout['n'] / layout['rate']:.2f} s, {layout['ch']} ch @ {layout['rate']} Hz"


def describe(container: Container, nbytes: int) -> dict:
    """Bitrate, duration and format of an audio stream."""
    from .powerlaw import LINEAR

    codec = _codec_for(container, "cpu")
    layout = codec.stream_layout(container)
    seconds = layout["n"] / layout["rate"]
    common = {"kbps": 8 * nbytes / seconds / 1000, "seconds": seconds, "sample_rate": layout["rate"],
              "channels": layout["ch"]}
    if container.model == WALLOC:
        return {**common, **codec.describe(layout)}
    return {**common, "chunks": len(layout["chunks"]),
            "quality": [q / 1000 + 1 for q in container.require("q", list)][:8],
            "quantizer": "linear" if layout["pw"] == LINEAR else f"power {layout['pw'] / 1000:g} (speech)"}
