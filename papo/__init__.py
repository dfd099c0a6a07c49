"""papo: a real-time chat server over WebSockets, with a terminal client."""

__version__ = "0.1.0"

#: The WebSocket subprotocol of the JSON protocol (see docs/protocol.md).
SUBPROTOCOL = "papo.v1"
