"""Codecs only: bytes in, values out, and back.  No I/O, no clock, no randomness."""
