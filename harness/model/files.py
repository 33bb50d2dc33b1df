"""Writing a file whole: write_atomic(path, text) - a temp file beside it, then os.replace, so a reader
sees the old file or the new one, never half of one. HarnessError (one line) when it cannot."""

import os
import tempfile

from harness.model.errors import HarnessError


def write_atomic(path: str, text: str, what: str = "") -> None:
    """Write `text` to `path` whole, creating its directory; `what` names the file in the error."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = ""
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise HarnessError(f"cannot write {what or 'the file'} {path}: {exc.strerror or exc}") from None


__all__ = ["write_atomic"]
