"""Learned image codecs: models, training, weights and the codec itself."""
from importlib import import_module

_EXPORTS = {"ImageCodec": ".codec", "from_compressai": ".compressai_wrap"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The public names, imported on first use (so the light ``ncodec.image.app`` loads without torch)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
