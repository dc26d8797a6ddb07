"""The learned image codecs through the Python API."""
import shutil

import numpy as np
import pytest
import torch

import ncodec
from ncodec.errors import CorruptStreamError, InputError, ModelMismatchError, UsageError
from ncodec.eval.metrics import psnr
from conftest import natural_image


@pytest.fixture(scope="module", params=["factorized", "hyperprior", "slice"])
def codec(request):
    return ncodec.load_codec(request.param, device="cpu")


def test_roundtrip_quality_floor(codec, photo):
    data = codec.encode(photo, quality=6)
    out = codec.decode(data)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert psnr(photo, out) > 24.0
    # decoding is deterministic and the top-level API picks the codec from the stream
    assert np.array_equal(ncodec.decode(data, device="cpu"), out)


def test_rate_grows_with_quality():
    codec = ncodec.load_codec("hyperprior", device="cpu")
    img = natural_image(128, 128)
    sizes = [len(codec.encode(img, quality=q)) for q in (1, 3.5, 6)]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (33, 1, 3), (17, 65, 3), (64, 64, 3)])
def test_any_size(shape):
    codec = ncodec.load_codec("hyperprior", device="cpu")
    img = natural_image(shape[0], shape[1])
    out = codec.decode(codec.encode(img, quality=4))
    assert out.shape == shape


def test_grayscale_and_alpha():
    codec = ncodec.load_codec("hyperprior", device="cpu")
    rgb = natural_image(40, 52)
    gray = rgb.mean(axis=2).astype(np.uint8)
    out = codec.decode(codec.encode(gray))
    assert out.shape == (40, 52, 1)
    assert psnr(gray[:, :, None], out) > 24
    alpha = np.zeros((40, 52), np.uint8)
    alpha[10:30, 5:40] = 255
    alpha[0, 0] = 17
    rgba = np.concatenate([rgb, alpha[:, :, None]], axis=2)
    out = codec.decode(codec.encode(rgba))
    assert out.shape == (40, 52, 4)
    assert np.array_equal(out[:, :, 3], alpha)  # alpha is lossless


def test_float_tensor_input():
    codec = ncodec.load_codec("hyperprior", device="cpu")
    img = natural_image(32, 32)
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    assert np.array_equal(codec.decode(codec.encode(t, 5)), codec.decode(codec.encode(img, 5)))


def exact_latent(codec, data):
    """The decoder's exact quantized latent (fixed point) of a stream."""
    from ncodec.container import Container

    c = Container.from_bytes(data)
    h, w = c.require("h"), c.require("w")
    shape = (1, codec.config.M, (h + 63) // 64 * 4, (w + 63) // 64 * 4)
    out = codec.latent.decode_quantized(c.sections, shape)
    return (torch.cat(out, dim=1) if isinstance(out, tuple) else out).cpu()


@pytest.mark.parametrize("name", ["hyperprior", "slice"])
def test_symbols_independent_of_threads_layout_and_precision(name, photo):
    """Determinism matrix: thread count, channels_last and a bf16 encoder never change the
    decoder's quantized latent; pixels differ at most by float rounding of the synthesis."""
    codec = ncodec.load_codec(name, device="cpu")
    data = codec.encode(photo, quality=3)
    ref_latent, ref_pixels = exact_latent(codec, data), codec.decode(data)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(exact_latent(codec, data), ref_latent)
        assert np.abs(codec.decode(data).astype(int) - ref_pixels).max() <= 2
    finally:
        torch.set_num_threads(old)
    codec.model.to(memory_format=torch.contiguous_format)     # the codec runs channels_last
    try:
        assert torch.equal(exact_latent(codec, data), ref_latent)
        assert np.abs(codec.decode(data).astype(int) - ref_pixels).max() <= 2
    finally:
        codec.model.to(memory_format=torch.channels_last)     # load_codec caches this codec
    with torch.autocast("cpu", dtype=torch.bfloat16):
        data_bf16 = codec.encode(photo, quality=3)  # another stream (bf16 analysis), same guarantee
    latent = exact_latent(codec, data_bf16)
    torch.set_num_threads(1)
    try:
        assert torch.equal(exact_latent(codec, data_bf16), latent)
    finally:
        torch.set_num_threads(old)
    assert psnr(photo, codec.decode(data_bf16)) > 24


def test_bad_inputs():
    codec = ncodec.load_codec("hyperprior", device="cpu")
    with pytest.raises(InputError):
        codec.encode(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InputError):
        codec.encode(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError):
        codec.encode(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(UsageError):
        codec.encode(natural_image(8, 8), quality=9)
    with pytest.raises(UsageError):
        ncodec.load_codec("nope")


def test_wrong_model_and_corrupt_stream():
    hp = ncodec.load_codec("hyperprior", device="cpu")
    sl = ncodec.load_codec("slice", device="cpu")
    data = hp.encode(natural_image(32, 32))
    with pytest.raises(ModelMismatchError):
        sl.decode(data)
    from ncodec.container import Container

    c = Container.from_bytes(data)
    c.weights_digest = b"\0" * 8
    with pytest.raises(ModelMismatchError, match="different weights"):
        hp.decode(c.to_bytes())
    c = Container.from_bytes(data)
    c.fields["w"] = 10**9
    with pytest.raises(CorruptStreamError):
        hp.decode(c.to_bytes())
    c = Container.from_bytes(data)
    c.sections["y"] = c.sections["y"][:-4]
    try:  # a shortened symbol section either decodes to some image or fails cleanly
        hp.decode(c.to_bytes())
    except CorruptStreamError:
        pass
    del c.sections["z"]
    with pytest.raises(CorruptStreamError):
        hp.decode(c.to_bytes())


def test_tiled_transforms_match_untiled(monkeypatch):
    """Large images run tile by tile; forcing tiny tiles on a small image shows no seams:
    PSNR within 0.05 dB of the untiled result, and the same stream size within a few bytes."""
    codec = ncodec.load_codec("hyperprior", "cpu")
    img = natural_image(320, 360)                   # 20x23 latent (24 padded): several tiles with margins
    whole = codec.encode(img, quality=4)
    whole_out = codec.decode(whole)
    monkeypatch.setattr(codec, "tile", 4)           # 64-pixel tiles, 96 pixels of context
    calls = []
    for net in (codec.model.g_a, codec.model.g_s):
        net[0].register_forward_hook(lambda m, i, o: calls.append(m))     # one call per tile
    tiled = codec.encode(img, quality=4)
    tiled_out = codec.decode(tiled)
    assert len(calls) == 2 * 5 * 6                  # 5x6 tiles each way
    assert abs(len(tiled) - len(whole)) <= 8
    assert abs(psnr(img, tiled_out) - psnr(img, whole_out)) < 0.05
    assert np.abs(tiled_out.astype(int) - whole_out.astype(int)).max() <= 2


def test_bfloat16_transforms_interoperate(photo):
    """bf16 transforms (fast mode) make valid streams that float32 codecs decode, at nearly the same quality."""
    fast = ncodec.load_codec("hyperprior", "cpu", precision="bfloat16")
    exact = ncodec.load_codec("hyperprior", "cpu")
    assert (fast.precision, exact.precision) == ("bfloat16", "float32")
    data = fast.encode(photo, quality=5)
    assert psnr(photo, exact.decode(data)) > psnr(photo, exact.decode(exact.encode(photo, quality=5))) - 0.3
    assert abs(psnr(photo, fast.decode(data)) - psnr(photo, exact.decode(data))) < 0.3
    with pytest.raises(UsageError):
        ncodec.load_codec("hyperprior", "cpu", precision="float8")


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_transforms_interoperate(photo):
    """torch.compile'd transforms make streams the eager codec decodes, at the same quality."""
    compiled = ncodec.load_codec("factorized", "cpu", compile=True)
    eager = ncodec.load_codec("factorized", "cpu")
    assert compiled.compiled and not eager.compiled
    data = compiled.encode(photo, quality=3)
    assert abs(psnr(photo, eager.decode(data)) - psnr(photo, eager.decode(eager.encode(photo, quality=3)))) < 0.05
    assert abs(psnr(photo, compiled.decode(data)) - psnr(photo, eager.decode(data))) < 0.05
    other = natural_image(150, 200)                 # a second size through the same compiled codec
    assert abs(psnr(other, compiled.decode(compiled.encode(other, quality=3)))
               - psnr(other, eager.decode(eager.encode(other, quality=3)))) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the lent GPU machine)")
@pytest.mark.parametrize("name", ["hyperprior", "slice"])
def test_gpu_encode_cpu_decode(name, photo):
    """Cross-device row of the determinism matrix: a stream made with bf16 transforms on the GPU
    decodes on the CPU to the very latent the GPU decoder computes."""
    gpu = ncodec.load_codec(name, device="cuda")
    cpu = ncodec.load_codec(name, device="cpu")
    data = gpu.encode(photo, quality=3)
    assert torch.equal(exact_latent(cpu, data), exact_latent(gpu, data))
    assert np.abs(cpu.decode(data).astype(int) - gpu.decode(data).astype(int)).max() <= 3
    assert psnr(photo, cpu.decode(data)) > 24


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["factorized", "hyperprior", "slice"])
def test_refinement_lowers_the_real_rd_loss(name, bf16, monkeypatch):
    """Encoder-side refinement (--refine) optimises the latent for one image: the unchanged
    decoder reads the stream, its real loss (lambda * 255^2 * MSE + bpp of the decoded file)
    drops, and the same input gives the same bytes again.  The search runs under bf16 autocast
    on CPUs with bf16 kernels and in float32 elsewhere; both paths are run here, whatever the CPU,
    except bf16 on a CPU that can only emulate it."""
    from ncodec.image import refine

    if bf16 and not refine.bf16_pays(torch.device("cpu")):
        pytest.skip("the bf16 refinement path needs a CPU with AVX512-BF16 or AMX (the float32 path runs here)")
    monkeypatch.setattr(refine, "bf16_pays", lambda device: bf16)
    codec = ncodec.load_codec(name, "cpu")
    img = natural_image(90, 120)                    # not a multiple of 64: the padding is masked out
    lam = codec.config.lambdas[2]

    def loss(data):
        mse = ((codec.decode(data).astype(np.float64) - img) ** 2).mean()   # 8-bit scale: lambda * mse
        return lam * mse + 8 * len(data) / img[:, :, 0].size

    steps = 40
    refined = codec.encode(img, quality=3, refine=steps)
    plain = codec.encode(img, quality=3)
    assert loss(refined) < loss(plain)              # the encoder keeps the refined latent only if it wins for real
    assert codec.encode(img, quality=3, refine=steps) == refined
    for bad in (-1, 1.5, 10**9):
        with pytest.raises(UsageError):
            codec.encode(img, quality=3, refine=bad)


def test_inference_gdn_matches_compressai():
    """The in-place GDN used for coding, and the decoder's CompressAI-free GDN loaded from a
    CompressAI GDN's state dict, compute exactly CompressAI's GDN and inverse GDN."""
    from compressai.layers import GDN
    from ncodec.image.models import InferenceGDN, gdn_inference

    torch.manual_seed(0)
    x = torch.randn(1, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    for inverse in (False, True):
        gdn = GDN(8, inverse=inverse)
        lean = InferenceGDN(8, inverse=inverse)
        with torch.no_grad():
            gdn.gamma.add_(0.05 * torch.rand_like(gdn.gamma))
            gdn.beta[:2] = -1.0                 # below the bound: the reparametrisation clamps it
            lean.load_state_dict(gdn.state_dict())
            assert torch.equal(gdn_inference(gdn, x), gdn(x))
            assert torch.equal(lean(x), gdn(x))


def test_subpixel_output_layer_matches_transposed_convolution():
    """The sub-pixel form of a narrow transposed convolution (used for the synthesis transform's
    output layer) computes the same sums; geometries without that form are left to the layer."""
    from torch import nn
    from ncodec.image.models import run_inference, subpixel_inference

    torch.manual_seed(0)
    for k, s, cin, cout in [(5, 2, 8, 3), (5, 2, 16, 5), (9, 4, 4, 2)]:
        layer = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1).double()
        x = torch.randn(2, cin, 7, 9, dtype=torch.float64)
        ref = layer(x)
        assert torch.allclose(subpixel_inference(layer, x), ref, rtol=0, atol=1e-12)
        assert torch.allclose(run_inference(nn.Sequential(layer), x), ref, rtol=0, atol=1e-12)
    odd = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    assert subpixel_inference(odd, x) is None
    assert torch.equal(run_inference(nn.Sequential(odd), x), odd(x))



def _slice_codec(tmp_path, checkerboard: bool, fuse_std: float = 0.0, core_slices: int = 0):
    """The shipped slice model's transforms and channel context through a weights file, without or
    with a checkerboard context (its fusion's last layer drawn with ``fuse_std``: 0 is the no-op the
    training graft starts from); with ``core_slices`` the aux slices' contexts are new (seeded) networks."""
    import dataclasses
    from ncodec.image.codec import ImageCodec, latent_codec_for
    from ncodec.image.models import build_model
    from ncodec.image.weights import export_model, load_weights

    source = load_weights(ncodec.api.assets_dir() / "image-slice.safetensors").model
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(source.config, checkerboard=checkerboard, core_slices=core_slices))
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape},
                          strict=False)
    if checkerboard:
        torch.manual_seed(0)
        for net in model.fuse:
            torch.nn.init.normal_(net[-1].weight, std=fuse_std)
            torch.nn.init.zeros_(net[-1].bias)
    path = tmp_path / f"slice-{checkerboard}-{fuse_std}-{core_slices}.safetensors"
    export_model(model, path)
    loaded = load_weights(path)
    return ImageCodec("slice", loaded.model, latent_codec_for(loaded.model, loaded.priors), loaded.digest)


def _decodes_within_half_a_step(codec, img, data):
    """Check that quality-3 stream ``data`` of ``img`` decodes to latent values within half a step of
    the encoder's latent; returns the padded input and that latent."""
    from ncodec.container import Container
    from ncodec.image.codec import PAD

    h, w = img.shape[:2]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")
    with torch.no_grad():
        y = codec.model.g_a(x).double() * codec._gains(3.0)[0]
    decoded = codec.latent.decode_quantized(Container.from_bytes(data).sections, tuple(y.shape))[1] / 1024
    assert (decoded - y).abs().max() <= 0.5 + 1e-3
    return x, y


def test_checkerboard_context_roundtrip(tmp_path):
    """Two-pass checkerboard coding: the decoder rebuilds every slice's anchors and then the other
    positions from them, so each decoded latent value lies within half a step of the encoder's
    latent (a desynchronised decoder is far off); the spatial context changes the rate, and a
    zero fusion codes the very latent, at the very ideal rate, of the model without it."""
    img = natural_image(70, 100)
    codec = _slice_codec(tmp_path, True, 0.02)
    data = codec.encode(img, quality=3)
    assert psnr(img, codec.decode(data)) > 24
    x, y = _decodes_within_half_a_step(codec, img, data)

    def ideal_bits(c):      # the entropy model's ideal bits for the latent of img at quality 3
        return c.latent.compress(c.analyse(x, 3.0), level=2)[1]

    zero, plain = _slice_codec(tmp_path, True, 0.0), _slice_codec(tmp_path, False)
    bits, zero_bits = ideal_bits(codec), ideal_bits(zero)
    zero_data = zero.encode(img, quality=3)
    plain_data = plain.encode(img, quality=3)
    assert zero_bits == pytest.approx(ideal_bits(plain), rel=1e-9) and zero_data != plain_data
    assert np.array_equal(zero.decode(zero_data), plain.decode(plain_data))
    assert abs(bits - zero_bits) > 10


def test_core_slices_decode_exactly_and_depend_on_the_core_alone(tmp_path):
    """With core_slices the slices after the core are coded from the hyperprior and the core alone:
    the stream round-trips exactly (each decoded latent value within half a step of the encoder's),
    and changing an auxiliary slice's latent leaves the other auxiliary slice's entropy parameters
    as they were (in the chained model it changes them)."""
    img = natural_image(70, 100)
    codec = _slice_codec(tmp_path, True, 0.02, core_slices=3)
    data = codec.encode(img, quality=3)
    assert np.array_equal(codec.decode(data), codec.decode(data)) and psnr(img, codec.decode(data)) > 20
    y = _decodes_within_half_a_step(codec, img, data)[1]

    def last_slice_params(c, shift):    # slice 4's channel-context output with slice 3's latent shifted
        lo, hi = c.model.offsets[3], c.model.offsets[4]
        z = y.clone()
        z[:, lo:hi] += shift
        hyper = torch.zeros(1, c.model.config.hyper_channels, *y.shape[2:], dtype=torch.float64)
        buf = (torch.cat([hyper, z], dim=1) * 1024).round()
        return c.latent.context[4](buf[:, :hyper.shape[1] + c.model.offsets[c.model.context_slices[4]]])

    chained = _slice_codec(tmp_path, True, 0.02)
    assert torch.equal(last_slice_params(codec, 3.0), last_slice_params(codec, 0.0))
    assert not torch.equal(last_slice_params(chained, 3.0), last_slice_params(chained, 0.0))
