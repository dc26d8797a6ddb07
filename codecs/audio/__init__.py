"""Learned audio codec: fixed MDCT, learned gains, hyperprior with frame context, learned dequantizer."""
from .codec import AudioCodec, DecodedAudio

__all__ = ["AudioCodec", "DecodedAudio"]
