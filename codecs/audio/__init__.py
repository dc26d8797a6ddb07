"""Learned audio codec: fixed MDCT, learned gains, hyperprior with frame context, learned dequantizer."""
from ..registry import lazy_exports

_EXPORTS = {"AudioCodec": ".codec", "DecodedAudio": ".codec"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)   # public names imported on first use
