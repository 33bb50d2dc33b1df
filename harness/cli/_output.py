"""What the commands print goes through clean_text: untrusted text (a server's output in a verdict, a
signature, a reason, a record read from a file) never reaches the terminal as escape sequences or control
characters (an OSC sequence would set the terminal's title; a CR would overwrite a line).

* CleanStream(stream) - a text stream whose write() applies harness.model.text.clean_text (newlines and
  tabs kept); `.raw` is the stream underneath, for the harness's own control sequences (the live progress
  line's "\\r\\x1b[K")
* install() - sys.stdout and sys.stderr become CleanStreams (idempotent); returns a function that undoes it
"""

import sys
from typing import Any, Callable, TextIO

from harness.model.text import clean_text


class CleanStream:
    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(clean_text(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.raw, "isatty", lambda: False)())

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, buffer, ...
        return getattr(self.raw, name)


def install() -> Callable[[], None]:
    saved = (sys.stdout, sys.stderr)
    if not isinstance(sys.stdout, CleanStream):
        sys.stdout = CleanStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, CleanStream):
        sys.stderr = CleanStream(sys.stderr)  # type: ignore[assignment]

    def undo() -> None:
        sys.stdout, sys.stderr = saved

    return undo


__all__ = ["CleanStream", "install"]
