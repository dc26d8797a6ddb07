"""The lossless image codec: exact round trips of grey, RGB and RGBA, wavefront order, clear errors."""
import io

import numpy as np
import pytest
from PIL import Image

import ncodec
from conftest import natural_image
from ncodec.container import Container
from ncodec.errors import CorruptStreamError, UsageError
from ncodec.image.lossless import fit as fitting
from ncodec.image.lossless.codec import LosslessCodec
from ncodec.image.lossless.context import CROSS, LAG, PlaneOrder, from_planes, to_planes
from ncodec.image.overfit.model import CAUSAL

TINY = fitting.Preset(steps=40, batch=1 << 10)


def test_colour_transform_is_exactly_invertible():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    rgb[0, :4] = [[0, 0, 0], [255, 255, 255], [255, 0, 255], [0, 255, 0]]    # the extremes
    assert (from_planes(to_planes(rgb)) == rgb).all()
    grey = rgb[:, :, :1]
    assert (from_planes(to_planes(grey)) == grey).all()


@pytest.mark.parametrize("planes,h,w", [(1, 1, 1), (3, 2, 9), (3, 17, 5), (1, 6, 40)])
def test_every_neighbour_is_decoded_before_the_value(planes, h, w):
    order = PlaneOrder(planes, h, w)
    step = np.full(order.size + 1, -1)
    for i, (a, b) in enumerate(order.steps()):
        step[order.order[a:b]] = i
    step[order.size] = -1                       # the outside entry: always known
    assert (step[:-1] >= 0).all()
    for c in range(planes):
        positions = np.arange(c * h * w, (c + 1) * h * w)
        index, inside = order.gather(positions, c)
        assert (step[index] < step[positions][:, None]).all()
        assert (inside == (index < order.size)).all()
    assert len(order.steps()) <= w + 2 * h + LAG * planes
    assert max(dx + 2 * dy for dy, dx in CROSS) < LAG and max(dx + 2 * dy for dy, dx in CAUSAL) < 0


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_round_trip_is_exact(channels):
    img = natural_image(37, 53)
    if channels == 1:
        img = img[:, :, 1:2]
    elif channels == 4:
        img = np.concatenate([img, np.linspace(0, 255, 37 * 53).reshape(37, 53, 1).astype(np.uint8)], axis=2)
    codec = LosslessCodec()
    data = codec.encode(img, preset=TINY)
    out = codec.decode(data)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert (out == img).all()


def test_a_photo_codes_smaller_than_png():
    img = natural_image(96, 128)
    data = LosslessCodec().encode(img, preset="fast")
    png = io.BytesIO()
    Image.fromarray(img).save(png, format="PNG", optimize=True)
    assert (LosslessCodec().decode(data) == img).all()
    assert len(data) < len(png.getvalue())


def test_extreme_images_round_trip():
    codec = LosslessCodec()
    rng = np.random.default_rng(1)
    for img in (np.zeros((8, 8, 3), np.uint8), np.full((5, 3, 3), 255, np.uint8),
                rng.integers(0, 256, (12, 20, 3), dtype=np.uint8),           # noise: escapes and wide rows
                np.where(rng.random((16, 16, 1)) < 0.5, 0, 255).astype(np.uint8)):
        assert (codec.decode(codec.encode(img, preset=TINY)) == img).all()


def test_api_and_errors():
    img = natural_image(20, 24)
    data = ncodec.encode(img, codec="lossless", preset=TINY)
    assert (ncodec.decode(data) == img).all()
    c = Container.from_bytes(data)
    c.fields["cfg"] = [1, 3, 999]
    with pytest.raises(CorruptStreamError):
        LosslessCodec().decode(c.to_bytes())
    with pytest.raises(UsageError, match="preset"):
        LosslessCodec().encode(img, preset="fastest")


def test_cli_round_trip_and_refused_options(tmp_path, capsys):
    from ncodec.cli import main

    src = tmp_path / "photo.png"
    Image.fromarray(natural_image(16, 20)).save(src)
    assert main(["encode", str(src), str(tmp_path / "p.ncz"), "--codec", "lossless", "--quality", "3"]) != 0
    assert "does not take --quality" in capsys.readouterr().err
    assert main(["encode", str(src), str(tmp_path / "p.ncz"), "--codec", "lossless", "--seed", "2"]) == 0
    assert main(["info", str(tmp_path / "p.ncz"), "--json"]) == 0
    assert '"quality": "exact"' in capsys.readouterr().out
    assert main(["decode", str(tmp_path / "p.ncz"), str(tmp_path / "back.png")]) == 0
    assert (np.asarray(Image.open(tmp_path / "back.png")) == np.asarray(Image.open(src))).all()
