"""Decoding an image stream loads neither CompressAI nor what it pulls in (torch_geometric, which
loads torch._dynamo, and scipy.stats): from Python and from the command line."""
import os
import subprocess
import sys

import numpy as np
import pytest

import ncodec
from conftest import natural_image
from ncodec.image.lossless.fit import Preset as LosslessPreset
from ncodec.image.overfit.fit import Preset

HEAVY = ("compressai", "torch_geometric", "torch._dynamo", "scipy.stats")

CHECK = """
import sys
{decode}
heavy = [m for m in {heavy!r} if m in sys.modules]
assert not heavy, f"decoding imported {{heavy}}"
"""


def _run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict:
    """A small image coded by every image codec, as .ncz files."""
    folder = tmp_path_factory.mktemp("streams")
    img = natural_image(64, 96)
    out = {}
    for name in ncodec.list_codecs("image"):
        options = {"overfit": {"preset": Preset(iterations=20, candidates=1, warmup=2)},
                   "lossless": {"preset": LosslessPreset(steps=10, batch=256)}}.get(name, {})
        out[name] = folder / f"{name}.ncz"
        out[name].write_bytes(ncodec.encode(img, codec=name, quality=3, device="cpu", **options))
    return out


def test_api_decode_imports_no_compressai(streams):
    """``ncodec.decode`` of each image codec's stream, in a fresh interpreter."""
    decode = "import ncodec\n" + "\n".join(f"ncodec.decode(open({str(p)!r}, 'rb').read(), device='cpu')"
                                           for p in streams.values())
    _run(CHECK.format(decode=decode, heavy=HEAVY))


def test_cli_decode_imports_no_compressai(streams, tmp_path):
    """``ncodec decode`` of the default codec's stream, in a fresh interpreter."""
    src, dst = streams[ncodec.DEFAULT_IMAGE_CODEC], tmp_path / "out.png"
    decode = (f"from ncodec.cli import main\n"
              f"assert main(['decode', {str(src)!r}, {str(dst)!r}, '--device', 'cpu']) == 0")
    _run(CHECK.format(decode=decode, heavy=HEAVY))
    assert dst.exists()


def test_decoder_only_model_decodes_like_the_trainable_one(streams):
    """The decoder-only model (CompressAI-free GDN, no encoder side) gives the trainable model's pixels."""
    from ncodec.image import app

    for name in app.WEIGHT_FILES:          # the models with trained weights (the overfit codec has none)
        data = streams[name].read_bytes()
        full = app.load_codec(name, "cpu").decode(data)
        lean = app._load(name, "cpu", None, None, False, decoder_only=True)
        assert lean.model.g_a is None and getattr(lean.model, "h_a", None) is None
        assert np.array_equal(lean.decode(data), full)
        with pytest.raises(ncodec.UsageError):
            lean.encode(natural_image(8, 8))
