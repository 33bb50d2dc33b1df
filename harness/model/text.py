"""Untrusted text (a server's output, a record read from a file) made safe to show: one function for the
terminal, the capsule README and the HTML report, so all three show the same thing.

* clean_text(value) - ANSI/OSC/DCS escape sequences removed (colours, cursor moves, terminal titles,
  hyperlinks), CRLF/CR -> LF, every other control character (NUL, BEL, ESC, C1) shown as its Unicode control
  picture (NUL -> U+2400), a bidirectional override as U+FFFD; tabs and newlines kept. Escaping for HTML
  is left to the template's autoescape.
* one_line(value) - clean_text, then newlines and tabs as spaces: for a verdict line or a progress line
* longest_run(text, ch) - the longest run of `ch` (a Markdown fence must be longer than any in its content)
"""

import re

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS / SOS / PM / APC strings
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
#: C0 / C1 controls (not tab, newline) and the bidirectional overrides and isolates that reorder how text
#: reads ("Trojan Source": U+202A-U+202E, U+2066-U+2069)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")


def _control_symbol(m: "re.Match[str]") -> str:
    code = ord(m.group(0))
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400 SYMBOL FOR NULL ...
    if code == 0x7F:
        return "\u2421"  # SYMBOL FOR DELETE
    return "\ufffd"


def clean_text(value: str) -> str:
    text = _ANSI.sub("", str(value))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(_control_symbol, text)


def one_line(value: str) -> str:
    return clean_text(value).replace("\n", " ").replace("\t", " ")


def longest_run(text: str, ch: str) -> int:
    runs = re.findall(re.escape(ch) + "+", text)
    return max((len(r) for r in runs), default=0)


__all__ = ["clean_text", "longest_run", "one_line"]
