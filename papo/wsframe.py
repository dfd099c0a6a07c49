"""Build WebSocket frames once, so one encoded frame can go to many peers.

Pure, no I/O. The server sends unmasked frames (RFC 6455 section 5.1) and
papo negotiates no extension by default, so a text frame is fully determined
by its payload: the fan-out path builds it once per event and writes the same
bytes to every recipient whose connection has no extension negotiated. The
transport falls back to the library's own framing for any other connection.
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (UTF-8 already)."""
    length = len(payload)
    head = 0x80 | OP_TEXT
    if length < 126:
        return struct.pack("!BB", head, length) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", head, 126, length) + payload
    return struct.pack("!BBQ", head, 127, length) + payload
