"""Learned audio codec: fixed MDCT, learned gains, hyperprior with frame context, learned dequantizer."""
from importlib import import_module

_EXPORTS = {"AudioCodec": ".codec", "DecodedAudio": ".codec"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The public names, imported on first use (so the light ``ncodec.audio.app`` loads without torch)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
