"""Where the terminal client's lines go: styled above the prompt in a terminal, plain when piped.

In a terminal, ``prompt_toolkit`` prints a line above the input line without
disturbing what is being typed, in the line's style (a notice dim, an error
red, a private message magenta); piped (``echo oi | python client.py --name
bot``), every line is plain text on stdout, so a script can read it, and a
fatal error goes to stderr. The texts for people are rendered here, in the
client's language.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.shortcuts import print_formatted_text

from papo.client_format import Line, notice
from papo.i18n import Says, render, t

GOODBYE = t("bye!")

STYLES = {"notice": "ansibrightblack", "error": "ansired", "private": "ansimagenta", "": ""}


class Screen:
    """Where lines go: styled above the prompt in a terminal, plain when piped.

    ``say`` and ``fail`` take texts for people and render them in ``lang``.
    """

    def __init__(self, interactive: bool, lang: str) -> None:
        self.interactive = interactive
        self.lang = lang

    def show(self, style: str, line: str) -> None:
        if self.interactive:
            print_formatted_text(FormattedText([(STYLES.get(style, ""), line)]))
        else:
            print(line, flush=True)

    def lines(self, lines: Sequence[Line]) -> None:
        for style, line in lines:
            self.show(style, line)

    def say(self, text: Says, style: str = "notice") -> None:
        """A line of the client's own: ``* `` and ``text``."""
        self.show(*notice(text, self.lang, style))

    def goodbye(self) -> None:
        self.show("notice", render(GOODBYE, self.lang))

    def fail(self, text: Says) -> None:
        """A fatal error: ``papo: `` and ``text``, on stderr when piped; in a terminal
        above the prompt like every line (prompt_toolkit's ``patch_stdout`` would hold
        a line written to stderr as the prompt closes, and it would never be seen)."""
        line = f"papo: {render(text, self.lang)}"
        if self.interactive:
            self.show("error", line)
        else:
            print(line, file=sys.stderr, flush=True)
