"""The lossless image codec: a small model fitted to each image predicts every colour value, and the
range coder codes the values exactly under its predictions.

Encoding fits a :class:`~.model.LosslessModel` to the image's planes (:mod:`.fit`), quantises its
weights (:mod:`~ncodec.image.overfit.weights`) and codes weights and values into one range-coded
section.  Every number that reaches the coder comes from :class:`~ncodec.entropy.FixedPointMLP`,
so a stream decodes bit-exactly on any machine; decoding runs in the wavefronts of
:class:`~.context.PlaneOrder`, one batched network evaluation per plane and one coder call per step.
Grey, RGB and RGBA (alpha coded by the image container's lossless alpha coder) round-trip exactly.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from ...container import Container
from ...entropy import ACT_FRAC, EntropyCodingError, FixedPointMLP, SymbolDecoder, SymbolEncoder
from ...entropy.tables import TableSet, logistic_tables
from ...errors import CorruptStreamError, InputError
from ...training import named_preset
from ..app import LOSSLESS
from ..codec import as_image_array, declared_size, decode_alpha, image_container
from ..overfit import weights
from ..overfit.arm import located_rows, located_tables
from .context import FEATURE_SCALE, PlaneOrder, features, from_planes, to_planes
from .fit import DEFAULT_PRESET, PRESETS, Preset, fit, mean_bits, plane_features
from .model import LOG_SCALE_MAX, LOG_SCALE_MIN, LosslessModel

NAME = LOSSLESS
STREAM_VERSION = 1
MAX_PIXELS = 1 << 24          # 16.7 megapixels
ONE = 1 << ACT_FRAC
MAX_HIDDEN = 64
STEPS_PER_BLOCK = 64        # wavefront steps whose neighbours are gathered at once


@lru_cache(maxsize=1)
def value_tables() -> tuple[TableSet, np.ndarray]:
    """The logistic tables of the colour values and their thresholds (see
    :func:`~ncodec.image.overfit.arm.located_tables`)."""
    return located_tables(LOG_SCALE_MIN, LOG_SCALE_MAX, logistic_tables)


def _digest() -> bytes:
    return hashlib.sha256(b"ncodec-lossless-%d" % STREAM_VERSION + value_tables()[0].digest()).digest()[:8]


class PlaneCoder:
    """Codes the planes of one image with a fitted model, exactly."""

    def __init__(self, model: LosslessModel, order: PlaneOrder):
        self.order = order
        self.nets = [(FixedPointMLP(net.linear), FixedPointMLP(net.mlp)) for net in model.nets]
        self.tables, self.thresholds = value_tables()

    def rows(self, plane: int, feats: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer features and predictions of values of ``plane`` -> their table rows and shifts."""
        fixed = feats.astype(np.float64) * (ONE // FEATURE_SCALE)
        linear, mlp = self.nets[plane]
        out = linear(fixed) + mlp(fixed)
        return located_rows(preds * ONE + out[:, 0], out[:, 1], self.thresholds)

    def encode(self, buffer: np.ndarray, enc: SymbolEncoder) -> None:
        size, n = self.order.size, self.order.h * self.order.w
        rows, shifts = np.empty(size, np.int64), np.empty(size, np.int64)
        for c in range(self.order.planes):
            positions = np.arange(c * n, (c + 1) * n)
            rows[positions], shifts[positions] = self.rows(c, *plane_features(buffer, self.order, c, positions))
        symbols = buffer[:size] - shifts
        order = self.order.order
        for a, b in self.order.steps():
            batch = order[a:b]
            enc.encode_rows(symbols[batch], rows[batch], self.tables)

    def decode(self, dec: SymbolDecoder) -> np.ndarray:
        """The flat buffer of the decoded planes (and the outside entry)."""
        order, n = self.order, self.order.h * self.order.w
        buffer = np.zeros(order.size + 1, dtype=np.int64)
        steps = order.steps()
        for first in range(0, len(steps), STEPS_PER_BLOCK):
            chunk = steps[first:first + STEPS_PER_BLOCK]
            start = chunk[0][0]
            block = order.order[start:chunk[-1][1]]
            edges = np.array([a for a, _ in chunk] + [chunk[-1][1]]) - start
            planes = block // n
            # each plane's neighbours for the whole block at once; a step's values of a plane are
            # consecutive rows there (the order is by step, then plane)
            gathered = []
            for c in range(order.planes):
                rows_of_c = np.flatnonzero(planes == c)
                gathered.append((*order.gather(block[rows_of_c], c), np.searchsorted(rows_of_c, edges)))
            for k in range(len(chunk)):
                rows, shifts = [], []
                for c, (index, inside, cuts) in enumerate(gathered):
                    lo, hi = cuts[k], cuts[k + 1]
                    if lo < hi:
                        r, sh = self.rows(c, *features(buffer[index[lo:hi]], inside[lo:hi], c))
                        rows.append(r)
                        shifts.append(sh)
                batch = block[edges[k]:edges[k + 1]]
                buffer[batch] = dec.decode_rows(np.concatenate(rows), self.tables) + np.concatenate(shifts)
        return buffer


class LosslessCodec:
    """Exact coding of 8-bit grey, RGB and RGBA images (``preset`` fast, medium or slow trades
    encoding time for size)."""

    modality = "image"
    name = NAME
    description = "lossless: a small model fitted to each image predicts every value (--preset)"

    def __init__(self, device: str = "cpu"):
        self.digest = _digest()

    @property
    def qualities(self) -> list[float]:
        return [1.0]

    def encode(self, image, quality: float | None = None, preset: str | Preset | None = None, seed: int = 0,
               progress: bool = False) -> bytes:
        """Code ``image`` (see :func:`~ncodec.image.codec.as_image_array`) exactly; ``quality`` is
        ignored (every stream is exact); ``progress`` shows a progress bar with the time left."""
        preset = named_preset(preset or DEFAULT_PRESET, PRESETS)
        arr, channels = as_image_array(image)
        h, w = arr.shape[:2]
        if h * w > MAX_PIXELS:
            raise InputError(f"the lossless codec codes images of up to {MAX_PIXELS} pixels; this one has {h * w}")
        planes = to_planes(arr[:, :, :1] if channels == 1 else arr[:, :, :3])
        order = PlaneOrder(len(planes), h, w)
        buffer = np.concatenate([p.ravel() for p in planes] + [np.zeros(1, np.int64)])
        model, samples = fit(buffer, order, preset, seed=seed, progress=progress)
        exponents = weights.quantise(model.weight_groups(), lambda: mean_bits(model, samples), order.size)
        enc = SymbolEncoder()
        rows = weights.encode(model.weight_groups(), exponents, enc)
        PlaneCoder(model, order).encode(buffer, enc)
        fields = {"cfg": [STREAM_VERSION, len(planes), model.hidden], "wexp": exponents, "wrow": rows}
        return image_container(NAME, self.digest, {"data": enc.finish()}, 1.0, arr, channels, fields).to_bytes()

    def check_stream(self, c: Container) -> None:
        c.check_made_by("image", NAME, self.digest)

    def decode(self, data: bytes | Container) -> np.ndarray:
        """Container bytes -> the HxWxC uint8 image that was encoded."""
        c = data if isinstance(data, Container) else Container.from_bytes(data)
        self.check_stream(c)
        w, h, channels = declared_size(c, MAX_PIXELS)
        cfg, exponents, rows = (c.require(k, list) for k in ("cfg", "wexp", "wrow"))
        planes = 1 if channels == 1 else 3
        if len(cfg) != 3 or cfg[:2] != [STREAM_VERSION, planes] or not 1 <= cfg[2] <= MAX_HIDDEN:
            raise CorruptStreamError("ncodec file declares a lossless model this ncodec cannot build")
        if not weights.valid(exponents, rows, 2):
            raise CorruptStreamError("ncodec file declares invalid weight quantisation")
        model = LosslessModel(planes, cfg[2])
        try:
            dec = SymbolDecoder(c.section("data"))
            weights.decode(model.weight_groups(), exponents, rows, dec)
            order = PlaneOrder(planes, h, w)
            buffer = PlaneCoder(model, order).decode(dec)
            n = h * w
            image = from_planes([buffer[k * n:(k + 1) * n].reshape(h, w) for k in range(planes)])
            if channels == 4:
                image = np.concatenate([image, decode_alpha(c.section("alpha"), c.require("ahist", list), h, w)[:, :, None]],
                                       axis=2)
            return image
        except KeyError as exc:
            raise CorruptStreamError(f"ncodec file lacks its {exc.args[0]!r} section") from None
        except EntropyCodingError as exc:
            raise CorruptStreamError(f"ncodec file is corrupt: {exc}") from None
