"""WaLLoC: wavelet packets, the image and audio codecs, latents without decoding, the FSDD experiment's
split."""
import dataclasses

import numpy as np
import pytest
import torch

import ncodec
import ncodec.walloc as walloc
from conftest import natural_image
from ncodec.container import Container
from ncodec.errors import CorruptStreamError, UsageError
from ncodec.eval import fsdd
from ncodec.eval.metrics import psnr
from ncodec.image.models import PRESETS, build_model
from ncodec.image.weights import export_model
from ncodec.latent.wavelets import WaveletPacket


@pytest.mark.parametrize("dims,shape", [(2, (2, 3, 64, 96)), (1, (3, 2, 1024))])
def test_wavelet_packets_are_critically_sampled_and_invertible(dims, shape):
    packet = WaveletPacket(dims, 3)
    x = torch.rand(*shape, dtype=torch.float64)
    bands = packet(x)
    assert bands.shape[1] == packet.bands(shape[1]) and bands.numel() == x.numel()
    assert bands.shape[2:] == tuple(s // 8 for s in shape[2:])
    assert torch.allclose(packet.inverse(bands), x, atol=1e-9)
    with pytest.raises(ValueError):
        WaveletPacket(3, 2)


def _small(name: str, tmp_path, **changes) -> str:
    """A small untrained model of a WaLLoC preset, exported as a weights file."""
    config = PRESETS[name]
    config = dataclasses.replace(config, N=16, extra={**config.extra, "blocks": 1, **changes})
    torch.manual_seed(0)
    path = tmp_path / f"{name}.safetensors"
    export_model(build_model(config), path)
    return str(path)


@pytest.fixture(scope="module")
def image_weights(tmp_path_factory):
    return _small("walloc", tmp_path_factory.mktemp("walloc"))


@pytest.fixture(scope="module")
def audio_weights(tmp_path_factory):
    return _small("walloc-audio", tmp_path_factory.mktemp("walloc"))


def speech_like(seconds: float = 1.5, rate: int = 16000) -> np.ndarray:
    """A voiced, vibrato-modulated harmonic signal with a syllable envelope (no recorded data)."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k * np.exp(-k / 12) for k in range(1, 30))
    return (0.08 * x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)).astype(np.float32)


def test_image_stream_round_trip_is_deterministic_and_holds_the_latents(image_weights):
    codec = ncodec.load_codec("walloc", "cpu", modality="image", weights=image_weights)
    img = natural_image(70, 90)
    data = codec.encode(img, quality=2)
    assert codec.encode(img, quality=2) == data
    out = codec.decode(data)
    assert out.shape == img.shape and np.array_equal(codec.decode(data), out)
    latent = walloc.latents(img, quality=2, weights=image_weights)
    assert latent.shape == (32, 9, 12)
    # the stream's latent, read by the entropy decoder alone, is the encoder's rounded latent
    c = Container.from_bytes(data)
    y = codec.latent.decompress(c.sections, codec.latent_shape(70, 90), level=1)[0, :, :9, :12]
    assert torch.equal(y.float(), latent)
    with pytest.raises(UsageError, match="integer qualities"):
        codec.encode(img, quality=2.5)


def test_audio_codec_restores_rate_channels_and_length(audio_weights):
    codec = ncodec.load_codec("walloc", "cpu", modality="audio", weights=audio_weights)
    mono = speech_like(0.7, 22050)
    stereo = np.stack([mono, 0.5 * mono])
    for x in (mono[None], stereo):
        out = codec.decode(codec.encode(x, 22050, quality=4))
        assert out.sample_rate == 22050 and out.samples.shape == x.shape
    data = codec.encode(stereo, 22050, quality=4)
    assert codec.encode(stereo, 22050, quality=4) == data
    latent = walloc.latents(stereo, 22050, quality=4, weights=audio_weights)
    assert latent.shape == (2, 16, -(-round(0.7 * 16000) // 64))
    c = Container.from_bytes(data)
    assert torch.equal(codec.decode_latent(c, codec.stream_layout(c))[:, :, 0].float(), latent)


def test_audio_bitrate_picks_the_highest_quality_that_fits(audio_weights):
    codec = ncodec.load_codec("walloc", "cpu", modality="audio", weights=audio_weights)
    x = speech_like(1.0)[None]
    sizes = [len(codec.encode(x, 16000, quality=q)) for q in range(1, 7)]
    target = (sizes[2] + 1) * 8 / 1000          # kbps that fit quality 3 exactly, one second of audio
    q = Container.from_bytes(codec.encode(x, 16000, kbps=target)).require("q") // 1000
    assert sizes[q - 1] * 8 / 1000 <= target and all(s * 8 / 1000 > target for s in sizes[q:])
    with pytest.raises(UsageError, match="integer qualities"):
        codec.encode(x, 16000, quality=2.5)
    with pytest.raises(UsageError):
        codec.encode(x, 16000, quality=3, kbps=12)


def test_corrupt_audio_streams_fail_cleanly(audio_weights):
    codec = ncodec.load_codec("walloc", "cpu", modality="audio", weights=audio_weights)
    c = Container.from_bytes(codec.encode(speech_like(0.3)[None], 16000, quality=2))
    for field, value in (("m", 10**9), ("q", 7000), ("q", 1500), ("rate", 4000)):
        bad = Container(c.codec, c.model, c.weights_digest, {**c.fields, field: value}, c.sections)
        with pytest.raises(CorruptStreamError):
            codec.decode(bad.to_bytes())
    bad = Container(c.codec, c.model, c.weights_digest, c.fields, {})
    with pytest.raises(CorruptStreamError, match="section"):
        codec.decode(bad.to_bytes())


def test_a_name_two_modalities_share_needs_the_modality():
    with pytest.raises(UsageError, match="modality"):
        ncodec.load_codec("walloc", "cpu")
    assert ncodec.list_codecs().count("walloc") == 1
    assert "walloc" in ncodec.list_codecs("image") and "walloc" in ncodec.list_codecs("audio")


def test_shipped_image_model_quality_floor():
    img = natural_image(128, 192)
    data = ncodec.encode(img, codec="walloc", quality=6, device="cpu")
    assert psnr(img, ncodec.decode(data, device="cpu")) > 31.0     # 33.6 dB measured
    assert torch.equal(walloc.stream_latents(data), walloc.latents(img, quality=6, device="cpu"))


def test_shipped_audio_model_quality_floor():
    x = speech_like(2.0)
    data = ncodec.encode((x[None], 16000), codec="walloc", quality=6, device="cpu")
    y = ncodec.decode(data, device="cpu").samples[0]
    snr = 10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2))
    assert snr > 19.0         # 23.0 dB measured
    assert torch.equal(walloc.stream_latents(data), walloc.latents(x[None], 16000, quality=6, device="cpu"))


def test_fsdd_split_follows_the_dataset_convention(tmp_path):
    for name in ("3_jackson_0.flac", "3_jackson_4.flac", "3_jackson_5.flac", "7_theo_49.flac"):
        (tmp_path / name).write_bytes(b"")
    files, labels, test = fsdd.dataset(tmp_path)
    assert [f.name for f in files] == ["3_jackson_0.flac", "3_jackson_4.flac", "3_jackson_5.flac", "7_theo_49.flac"]
    assert labels.tolist() == [3, 3, 3, 7] and test.tolist() == [True, True, False, False]
    x = torch.ones(16, 300)
    assert fsdd.fit_frames(x).shape == (16, fsdd.FRAMES) and fsdd.fit_frames(x[:, :10])[:, 10:].abs().sum() == 0


def test_training_starts_from_principal_components():
    """init_from_data makes the untrained model a PCA codec: its decoder's linear map inverts the
    encoder's projection, the convolutional correction starts at zero."""
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(PRESETS["walloc"], N=16, extra={**PRESETS["walloc"].extra, "blocks": 1}))
    x = torch.from_numpy(natural_image(128, 128)).permute(2, 0, 1)[None].float() / 255
    model.init_from_data(x)
    model.eval()
    with torch.no_grad():
        out = model(x, torch.tensor([5.0]))["x_hat"]
    assert 10 * torch.log10(1 / (out - x).pow(2).mean()) > 25.0
