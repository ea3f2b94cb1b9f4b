"""Files on disk: the share catalog, hashing, partial downloads."""
