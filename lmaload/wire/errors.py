"""The single error type every decoder in lmaload.wire raises on bad input."""


class WireError(ValueError):
    """Malformed input: ``offset`` is the octet offset (from the start of the buffer handed to the
    decoder) where the problem was found, ``reason`` says what is wrong there."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
