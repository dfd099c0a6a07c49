"""Build WebSocket frames once, so one encoded frame can go to many peers; read the
commonest client frame without the parser.

Pure, no I/O. The server sends unmasked frames (RFC 6455 section 5.1) and
papo negotiates no extension by default, so a text frame is fully determined
by its payload: the fan-out path builds it once per event and writes the same
bytes to every recipient whose connection has no extension negotiated. The
transport falls back to the library's own framing for any other connection.

What clients send most is a chat line: one whole, masked text frame, alone in
what one read returned. :func:`client_text` reads exactly that frame (and
refuses anything else, which the library's parser then reads), at a tenth of
the cost of the library's generator-based parser.
"""

from __future__ import annotations

import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover (the library builds its speedups where it can)
    from websockets.utils import apply_mask

OP_TEXT = 0x1
#: FIN set, RSV1-3 clear, opcode text: a whole text message in one frame.
_FIN_TEXT = 0x80 | OP_TEXT
_MASKED = 0x80


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (UTF-8 already)."""
    length = len(payload)
    head = 0x80 | OP_TEXT
    if length < 126:
        return struct.pack("!BB", head, length) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", head, 126, length) + payload
    return struct.pack("!BBQ", head, 127, length) + payload


def client_text(data: bytes, max_size: int | None) -> bytes | None:
    """The unmasked payload when ``data`` is exactly one final, masked text frame
    (no reserved bit, a 7- or 16-bit length, at most ``max_size`` bytes); else None.

    None says nothing about ``data``: it may be several frames, part of one,
    a control frame, a fragment or a protocol error, for the library to read.
    """
    if len(data) < 6 or data[0] != _FIN_TEXT:
        return None
    length = data[1] ^ _MASKED  # a client's frame is masked: the high bit is set
    if length < 126:
        start = 6
    elif length == 126 and len(data) >= 8:
        length = int.from_bytes(data[2:4])
        start = 8
    else:  # unmasked (the library fails the connection), or a 64-bit length
        return None
    if len(data) != start + length or (max_size is not None and length > max_size):
        return None
    return apply_mask(data[start:], data[start - 4 : start])
