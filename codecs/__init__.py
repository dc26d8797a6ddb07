"""ncodec: neural compression with real bitstreams.

    import ncodec
    data = ncodec.encode(image_uint8_hwc, quality=3)     # bytes (.ncz container)
    image = ncodec.decode(data)
    codec = ncodec.load_codec("slice")                    # codec object: encode/decode/qualities
"""
from .api import (DEFAULT_IMAGE_CODEC, decode, decode_file, encode, encode_file, info, list_codecs,
                  load_codec)
from .errors import (CorruptStreamError, InputError, ModelMismatchError, NcodecError, OutputError,
                     UsageError)

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_IMAGE_CODEC", "decode", "decode_file", "encode", "encode_file", "info", "list_codecs", "load_codec",
    "CorruptStreamError", "InputError", "ModelMismatchError", "NcodecError", "OutputError", "UsageError",
]
