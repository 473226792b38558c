"""Pure parsers and decoders: text/bytes in, dataclasses out, no I/O."""
