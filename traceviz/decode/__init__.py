"""Sans-I/O decoders: bytes (or index columns) in, events out; no file access."""
