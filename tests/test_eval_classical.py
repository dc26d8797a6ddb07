"""ncodec.eval.classical: every available Pillow codec round-trips and spends fewer bytes at lower quality."""
import sys

import numpy as np
import pytest

from ncodec.eval.classical import CLASSICAL_CODECS, CodecUnavailable, available_codecs, get_codec
from ncodec.eval.metrics import psnr


def photo(h: int = 48, w: int = 64) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:100 + h, 150:150 + w])


@pytest.mark.parametrize("name", CLASSICAL_CODECS)
def test_roundtrip_and_rate_order(name):
    if name not in available_codecs():
        pytest.skip(f"{name} is unavailable here")
    codec = get_codec(name)
    img = photo()
    low, high = codec.qualities[0], codec.qualities[-1]
    small, big = codec.encode(img, quality=low), codec.encode(img, quality=high)
    assert len(small) < len(big)
    for data, floor in ((small, 15.0), (big, 32.0)):
        out = codec.decode(data)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert psnr(img, out) > floor


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="HxWx3"):
        get_codec("jpeg").encode(photo()[:, :, 0], quality=50)


def test_unknown_and_unavailable_codecs(monkeypatch):
    with pytest.raises(ValueError, match="unknown classical codec"):
        get_codec("bpg")
    monkeypatch.setitem(sys.modules, "pillow_jxl", None)  # makes "import pillow_jxl" fail
    assert "jxl" not in available_codecs()
    with pytest.raises(CodecUnavailable, match="pillow-jxl-plugin"):
        get_codec("jxl")
