"""Training and coding cannot drift apart: for every shipped model, the bits of the likelihoods its
forward pass computes in evaluation mode (what training minimises) match the bytes the range coder
writes for the same latent within 0.5 %."""
import numpy as np
import pytest
import torch

import ncodec
from ncodec.container import Container

from conftest import DATA, natural_image

TOLERANCE = 0.005
CLIPS = {"speech": DATA / "audio" / "speech" / "vctk_16k" / "p232_003.wav",
         "music": DATA / "audio" / "music" / "encodec" / "encodec_test_48k.wav"}


def _bits(likelihoods: list[torch.Tensor]) -> float:
    return sum(float(-torch.log2(lik).sum()) for lik in likelihoods)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return natural_image(256, 320)


@pytest.mark.parametrize("name", ["factorized", "hyperprior", "slice"])
@pytest.mark.parametrize("quality", [2, 4, 6])
def test_image_forward_bits_match_the_coded_sections(image, name, quality):
    from ncodec.image.codec import PAD

    codec = ncodec.load_codec(name, device="cpu")
    c = Container.from_bytes(codec.encode(image, quality=quality))
    coded = 8 * sum(len(c.sections[k]) for k in ("y", "z") if k in c.sections)
    h, w = image.shape[:2]
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")
    assert not codec.model.training
    with torch.no_grad():
        forward = _bits(codec.model(x, torch.tensor([quality - 1.0]))["likelihoods"])
    assert abs(coded / forward - 1) < TOLERANCE, (coded, forward)


@pytest.fixture(scope="module")
def audio_chunks() -> dict:
    """Three seconds of speech and of music as one chunk of the codec's frame-boosted MDCT coefficients."""
    from ncodec.audio import frameboost
    from ncodec.audio.io import Resampler, read_audio
    from ncodec.audio.mdct import mdct

    codec = ncodec.load_codec("mdct", device="cpu")
    chunks = {}
    for kind, path in CLIPS.items():
        if not path.exists():
            pytest.skip(f"{path} not found (../shared/data is absent)")
        x, rate = read_audio(path)
        resample = Resampler(len(x), rate, codec.rate)
        m = np.concatenate([resample(x[:, rate:4 * rate]), resample(None)], axis=1)
        frames = (m.shape[1] // codec.hop - 1) // 4 * 4
        coefs = mdct(torch.from_numpy(np.ascontiguousarray(m[:, :(frames + 1) * codec.hop])), codec.hop)
        boosts = frameboost.measure_levels(coefs)
        chunks[kind] = (coefs * frameboost.factors(boosts), boosts)
    return chunks


@pytest.mark.parametrize("kind", ["speech", "music"])
@pytest.mark.parametrize("quality", [4, 8, 12])
def test_audio_forward_bits_match_the_coded_sections(audio_chunks, kind, quality):
    """The ``y`` section also carries the band fill and frame boost levels, coded with fixed tables:
    their ideal bits are what the coder's model charges for them."""
    from ncodec.audio import bandfill

    codec = ncodec.load_codec("mdct", device="cpu")
    coefs, boosts = audio_chunks[kind]
    y = coefs * codec.model.gains(torch.tensor([quality - 1.0]))
    sections, _, _, ideal = codec.latent.compress(y, boosts, bandfill.CURRENT, codec.hop)
    coded = 8 * (len(sections["z"]) + len(sections["y"])) - ideal["side"]
    assert not codec.model.training
    with torch.no_grad():
        forward = _bits(codec.model.latent_forward(y)[2])
    assert abs(coded / forward - 1) < TOLERANCE, (coded, forward)
