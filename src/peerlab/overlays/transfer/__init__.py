"""Gnutella-style HTTP file transfers: serving shares and swarmed downloads."""
