"""Sans-I/O parsers from wire payloads (and recorded files) to `Post`s."""
