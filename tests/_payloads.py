"""Hostile strings shared by the terminal, capsule and HTML tests (issue #16): each is something a server's
output, an app's name or a record file may carry. FORBIDDEN are what must never come out raw."""

from typing import Dict, Tuple

PAYLOADS: Dict[str, str] = {
    "osc-title": "\x1b]0;pwned title\x07",
    "osc-hyperlink": "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "csi-clear": "\x1b[2J\x1b[H\x1b[31mred\x1b[0m",
    "c1-csi": "\x9b31mred",
    "cr-overwrite": "passed\rFAILED",
    "nul-bel": "a\x00b\x07c\x08d",
    "bidi": "admin\u202egnp.exe",
    "fence": "```\n<script>alert('fence')</script>\n```",
    "html": "<img src=x onerror=alert(1)></td></tr></table>",
    "markdown": "[click](javascript:alert(2)) **bold** | cell |",
    "cmd": "a & calc.exe | type %PATH% ^ \"quoted\" 'single' !x!",
    "shell": "$(touch /tmp/pwned) `id` ; rm -rf /",
}

#: characters that must never reach a terminal, a capsule README or the HTML page raw
FORBIDDEN: Tuple[str, ...] = ("\x1b", "\x07", "\x00", "\x08", "\x9b", "\r", "\u202e")


def raw_controls(text: str) -> Tuple[str, ...]:
    """The FORBIDDEN characters present in `text`."""
    return tuple(ch for ch in FORBIDDEN if ch in text)


__all__ = ["FORBIDDEN", "PAYLOADS", "raw_controls"]
