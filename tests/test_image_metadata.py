"""What travels with a photo through ``ncodec encode``/``decode``: pixels upright by their EXIF
orientation, the ICC profile always, EXIF and XMP with ``--keep-metadata``; damaged metadata
sections are refused as corrupt; empty training folders are an input error."""
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

import ncodec
from ncodec.cli import main
from ncodec.container import Container
from ncodec.errors import CorruptStreamError, InputError
from ncodec.image.metadata import MAX_BYTES, ImageMetadata
from conftest import natural_image

CODEC = ["--codec", "factorized", "-q", "6", "--device", "cpu"]   # the cheapest image model
MODEL_TAG = 0x0110


def oriented_jpeg(path: Path, orientation: int = 6, model: str | None = "ncodec test camera") -> Path:
    """A 40x64 (width x height) JPEG whose EXIF asks viewers to rotate it (6: show it 64x40)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    if model:
        exif[MODEL_TAG] = model
    Image.fromarray(natural_image(64, 40)).save(path, quality=95, exif=exif)
    return path


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / mse)


def roundtrip(tmp_path: Path, src: Path, *options: str, out: str = "out.png") -> Path:
    stream, decoded = tmp_path / "a.ncz", tmp_path / out
    assert main(["encode", str(src), str(stream), *CODEC, *options]) == 0
    assert main(["decode", str(stream), str(decoded), "--device", "cpu"]) == 0
    return decoded


def test_exif_orientation_is_applied_on_input(tmp_path):
    src = oriented_jpeg(tmp_path / "phone.jpg")
    with Image.open(src) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert shown.shape == (40, 64, 3)
    with Image.open(roundtrip(tmp_path, src)) as out:
        assert out.size == (64, 40)
        assert psnr(np.asarray(out.convert("RGB")), shown) > 25
    from ncodec.eval.rd_image import read_image      # the RD sweeps read the same way
    assert np.array_equal(read_image(src), shown)


def test_icc_profile_travels_without_asking(tmp_path, capsys):
    profile = srgb_profile()
    src = tmp_path / "wide.png"
    Image.fromarray(natural_image(40, 56)).save(src, icc_profile=profile)
    decoded = roundtrip(tmp_path, src)
    with Image.open(decoded) as out:
        assert out.info.get("icc_profile") == profile
    capsys.readouterr()
    assert main(["info", str(tmp_path / "a.ncz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["icc_profile"] is True and info["metadata"] == "none" and "icc" in info["sections"]


def test_exif_only_with_keep_metadata(tmp_path):
    src = oriented_jpeg(tmp_path / "phone.jpg")
    with Image.open(roundtrip(tmp_path, src)) as out:
        assert MODEL_TAG not in out.getexif()
    report = ncodec.encode_file(src, tmp_path / "kept.ncz", codec="factorized", quality=6, device="cpu",
                                keep_metadata=True)
    assert report["metadata"] == ["exif"]
    for suffix in (".png", ".webp", ".tif"):
        decoded = tmp_path / f"kept{suffix}"
        ncodec.decode_file(tmp_path / "kept.ncz", decoded, device="cpu")
        with Image.open(decoded) as out:
            exif = out.getexif()
            assert out.size == (64, 40) and exif[MODEL_TAG] == "ncodec test camera" and exif[0x0112] == 1, suffix


def test_keep_metadata_is_an_image_option(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"options are checked before the file is read")
    assert main(["encode", str(tmp_path / "a.wav"), str(tmp_path / "a.ncz"), "--keep-metadata"]) == 2
    assert "audio encoding does not take --keep-metadata" in capsys.readouterr().err


@pytest.mark.parametrize("payload, message", [
    (b"not zlib at all", "does not decompress"),
    (zlib.compress(bytes(MAX_BYTES + 1)), "expands past"),
    (zlib.compress(b"too short for an ICC profile"), "not an ICC profile"),
    (zlib.compress(srgb_profile())[:-3], "truncated"),
], ids=["not-zlib", "oversized", "not-icc", "truncated"])
def test_damaged_metadata_section_is_a_corrupt_stream(tmp_path, capsys, payload, message):
    src = tmp_path / "a.png"
    Image.fromarray(natural_image(32, 32)).save(src, icc_profile=srgb_profile())
    stream = tmp_path / "a.ncz"
    assert main(["encode", str(src), str(stream), *CODEC]) == 0
    c = Container.from_bytes(stream.read_bytes())
    c.sections["icc"] = payload
    stream.write_bytes(c.to_bytes())
    capsys.readouterr()
    assert main(["decode", str(stream), str(tmp_path / "out.png"), "--device", "cpu"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ncodec: error:") and message in err
    assert not (tmp_path / "out.png").exists()


def test_metadata_sections_are_bounded():
    with pytest.raises(InputError, match="ICC profile"):
        ImageMetadata(icc=bytes(MAX_BYTES + 1)).to_sections()
    with pytest.raises(CorruptStreamError, match="not EXIF"):
        ImageMetadata.from_sections({"exif": zlib.compress(b"nonsense")})
    assert ImageMetadata.from_sections({}) == ImageMetadata()


@pytest.mark.parametrize("modality, extra", [("image", ["--arch", "factorized"]), ("audio", [])])
def test_training_on_an_empty_folder_is_an_input_error(tmp_path, capsys, modality, extra):
    (tmp_path / "empty").mkdir()
    args = ["train", modality, *extra, "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no training {modality}" in err
    assert not (tmp_path / "run").exists()      # the data is checked before any output is made
