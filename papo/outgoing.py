"""What the fan-out sends: each server event encoded once, framed once, for every reader.

A message to a room of a thousand sessions is one :class:`Outgoing`, handed
to each of them: a recipient takes the payload or the whole WebSocket frame
of its mode (JSON or plain text) and language, built by the first recipient
that needs it and kept for the others, so the message is serialised once or
twice, not a thousand times. :class:`OutgoingRun` does the same for several
events to the same recipients (one commit's messages to a room), joined into
one ``bytes`` per mode and language. Both are on the per-message path: a
chat message's frame is one dictionary lookup (:attr:`Outgoing.frames`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from papo.events import Error, Message, Mode, Notice, ServerEvent
from papo.i18n import DEFAULT_LANGUAGE
from papo.plain import render_plain
from papo.protocol_encode import encode_json
from papo.wsframe import text_frame


class _Kept(enum.Enum):
    NOT_YET = 0


#: What :class:`Outgoing` has not encoded yet (None is "nothing to send").
_NOT_YET: Final = _Kept.NOT_YET


@dataclass(slots=True)
class Outgoing:
    """One server event, encoded at most once per mode and language, framed at most once.

    The fan-out builds one ``Outgoing`` per event and hands it to every
    recipient; each recipient takes the payload or frame of its own mode and
    language. A chat message reads the same in every language (in JSON, and a
    public line in plain text), so it is encoded once per mode whatever the
    languages of its readers.
    """

    event: ServerEvent
    _payload: dict[str, bytes | None] = field(default_factory=dict)
    #: The frames built so far (None: nothing to send), under the mode alone for what
    #: reads the same in every language: the fan-out looks a chat message's up there.
    frames: dict[str, bytes | None] = field(default_factory=dict)

    def _key(self, mode: Mode, lang: str) -> str:
        event = self.event
        if isinstance(event, Message) and (
            mode == "json" or (event.to is None and event.edited_ts is None and not event.deleted)
        ):
            return mode
        if mode == "json" and not isinstance(event, (Error, Notice)):
            return mode
        return f"{mode}:{lang}"

    def payload(self, mode: Mode, lang: str = DEFAULT_LANGUAGE) -> bytes | None:
        """The text frame payload for a client in ``mode`` reading ``lang``, or None for nothing."""
        # What reads the same in every language is kept under the mode alone. (Lookups,
        # not try/except: the first recipient of every event would raise KeyError twice.)
        kept = self._payload.get(mode, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        key = self._key(mode, lang)
        kept = self._payload.get(key, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        if mode == "json":
            data: bytes | None = encode_json(self.event, lang)
        else:
            line = render_plain(self.event, lang)
            data = None if line is None else line.encode()
        self._payload[key] = data
        return data

    def frame(self, mode: Mode, lang: str = DEFAULT_LANGUAGE) -> bytes | None:
        """The whole unmasked WebSocket text frame for ``mode`` and ``lang``, or None.

        The fan-out's hot path: a chat message's frame is one dictionary lookup.
        """
        kept = self.frames.get(mode, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        key = self._key(mode, lang)
        kept = self.frames.get(key, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        payload = self.payload(mode, lang)
        built = None if payload is None else text_frame(payload)
        self.frames[key] = built
        return built


class OutgoingRun:
    """Several events for the same recipients, in order: each encoded once, all framed once.

    A run of messages to one room (one commit's worth, under load) is handed
    to every recipient as one object; a recipient takes the frames of its mode
    and language joined into one ``bytes``, built at most once per mode and
    language for the whole run. So fanning out k messages to n sessions costs
    n buffer appends, not k times n.
    """

    __slots__ = ("_joined", "outs")

    def __init__(self, outs: list[Outgoing]) -> None:
        self.outs = outs
        self._joined: dict[tuple[Mode, str], bytes] = {}

    def joined(self, mode: Mode, lang: str = DEFAULT_LANGUAGE) -> bytes:
        """Every event's whole frame for ``mode`` and ``lang``, back to back (maybe empty)."""
        key = (mode, lang)
        try:
            return self._joined[key]
        except KeyError:
            pass
        frames = [out.frame(mode, lang) for out in self.outs]
        data = b"".join(frame for frame in frames if frame is not None)
        self._joined[key] = data
        return data
