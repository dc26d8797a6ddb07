"""Learned image codecs: models, training, weights and the codec itself."""
from ..registry import lazy_exports

_EXPORTS = {"ImageCodec": ".codec", "from_compressai": ".compressai_wrap"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)   # public names imported on first use
