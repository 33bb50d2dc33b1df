"""write_atomic: whole files, with the mode an ordinary write would give them (pages were left 0600)."""

import os
import stat
import sys

import pytest

from harness.model.errors import HarnessError
from harness.model.files import write_atomic

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="file modes are POSIX-only")


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@POSIX
def test_a_new_file_gets_the_mode_an_ordinary_write_gives(tmp_path):
    plain = tmp_path / "plain.html"
    with open(plain, "w", encoding="utf-8") as fh:
        fh.write("x")
    page = tmp_path / "sub" / "page.html"
    write_atomic(str(page), "<p>hi</p>")
    assert page.read_text(encoding="utf-8") == "<p>hi</p>"
    assert _mode(str(page)) == _mode(str(plain))
    assert _mode(str(page)) & stat.S_IROTH, "a published page must be readable by others (umask 022 here)"
    assert [p.name for p in page.parent.iterdir()] == ["page.html"], "no temp file is left beside it"


@POSIX
def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{}", encoding="utf-8")
    os.chmod(path, 0o640)
    write_atomic(str(path), '{"a": 1}\n')
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n'
    assert _mode(str(path)) == 0o640


def test_an_unwritable_place_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(HarnessError) as err:
        write_atomic(str(blocker / "page.html"), "x", "the page")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("cannot write the page ")
