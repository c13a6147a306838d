"""Encoders, blocks and decoders; importing this package registers all of them."""

from code.models.blocks import cross_attention, identity, spade  # noqa: F401
from code.models.decoders import reconstruction, saliency, scanpath  # noqa: F401
from code.models.encoders import convnet, dinov2  # noqa: F401
