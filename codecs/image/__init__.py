"""Learned image codecs: models, training, weights and the codec itself."""
from .codec import ImageCodec
from .compressai_wrap import from_compressai

__all__ = ["ImageCodec", "from_compressai"]
