"""Encoders, blocks and decoders; importing this package registers all of them."""
