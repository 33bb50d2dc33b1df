"""Writing a file whole: write_atomic(path, text) - a temp file beside it, then os.replace, so a reader
sees the old file or the new one, never half of one. HarnessError (one line) when it cannot.

The file gets the mode `open(path, "w")` would give it: an existing file keeps its mode, a new one gets
0o666 less the umask. (mkstemp's temp file is 0o600; published pages left that way are unreadable to the
web server or the Pages artifact that serves them.)"""

import os
import stat
import tempfile

from harness.model.errors import HarnessError

# Read once, at import (one thread then): os.umask can only be read by setting it, and a set-and-restore
# while other threads create files would let theirs be made with a umask of 0.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _mode_for(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_UMASK


def write_atomic(path: str, text: str, what: str = "") -> None:
    """Write `text` to `path` whole, creating its directory; `what` names the file in the error."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = ""
    try:
        os.makedirs(directory, exist_ok=True)
        mode = _mode_for(path)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise HarnessError(f"cannot write {what or 'the file'} {path}: {exc.strerror or exc}") from None


__all__ = ["write_atomic"]
