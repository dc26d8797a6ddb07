"""Container format: round trip, corruption cases and a short fuzz run."""
import pytest
from hypothesis import given, settings, strategies as st

from ncodec.container import Container, MAGIC
from ncodec.errors import CorruptStreamError, ModelMismatchError, NcodecError


def sample() -> Container:
    return Container("image", "hyperprior", b"12345678", {"w": 768, "h": 512, "q": 3000, "name": "x", "f": 1.5,
                                                           "l": [1, -2, 300]},
                     {"z": b"\x01\x02\x03\x04", "y": bytes(range(256)) * 3})


def test_roundtrip():
    c = sample()
    back = Container.from_bytes(c.to_bytes())
    assert back == c


def test_wrong_magic_truncation_and_padding():
    data = sample().to_bytes()
    with pytest.raises(CorruptStreamError, match="magic"):
        Container.from_bytes(b"GIF89a" + data)
    for n in (0, 3, 5, 10, len(data) - 1):
        with pytest.raises(CorruptStreamError):
            Container.from_bytes(data[:n])
    with pytest.raises(CorruptStreamError):
        Container.from_bytes(data + b"\0")


def test_every_single_bit_flip_is_caught():
    data = bytearray(sample().to_bytes())
    for i in range(len(data)):
        for bit in (0, 7):
            d = bytearray(data)
            d[i] ^= 1 << bit
            with pytest.raises(NcodecError):
                Container.from_bytes(bytes(d))


def test_future_format_version_is_refused_clearly():
    data = bytearray(sample().to_bytes())
    data[len(MAGIC)] = 99
    with pytest.raises(ModelMismatchError, match="version 99"):
        Container.from_bytes(bytes(data))


def test_missing_section_and_field_messages():
    c = Container.from_bytes(sample().to_bytes())
    with pytest.raises(CorruptStreamError, match="alpha"):
        c.section("alpha")
    with pytest.raises(CorruptStreamError, match="fps"):
        c.require("fps")


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(blob):
    for data in (blob, MAGIC + blob, sample().to_bytes()[:12] + blob):
        try:
            Container.from_bytes(data)
        except NcodecError:
            pass
