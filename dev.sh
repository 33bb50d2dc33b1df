#!/usr/bin/env bash
# Bootstrap and run: `bash dev.sh matrix` (the main job: scenario matrix -> report.html) or `bash dev.sh test`.
# Creates .venv with the first Python >= 3.8 it finds, installs the project with its test extras, then runs.
set -euo pipefail
cd "$(dirname "$0")"

pick_python() {
    for cand in "${HARNESS_BOOTSTRAP_PYTHON:-}" python3 python; do
        [ -n "$cand" ] || continue
        if command -v "$cand" >/dev/null 2>&1 &&
           "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' 2>/dev/null; then
            echo "$cand"; return 0
        fi
    done
    echo "dev.sh: no Python >= 3.8 on PATH" >&2; return 1
}

# uv builds the venv and installs into it (seconds, not minutes); a uv on PATH is used as it is, else it
# comes from PyPI into the venv once. Quiet unless something fails (then its output is shown).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
quiet() { "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "dev.sh: failed: $*" >&2; exit 1; }; }
uv=$(command -v uv || true)
if [ ! -x .venv/bin/python ]; then
    py=$(pick_python)
    if [ -n "$uv" ]; then quiet "$uv" venv -q --seed --python "$py" .venv; else quiet "$py" -m venv .venv; fi
fi
stamp=.venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
    if [ -z "$uv" ]; then
        [ -x .venv/bin/uv ] || quiet .venv/bin/python -m pip install -q --disable-pip-version-check uv
        uv=.venv/bin/uv
    fi
    # byte-compiled: every matrix cell's harness child imports httpx, psutil and the rest again, and
    # uv does not compile by default (PYTHONDONTWRITEBYTECODE=1 shells never would): 0.25 s CPU a child
    quiet "$uv" pip install -q --compile-bytecode --python .venv/bin/python -e '.[test]'
    touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    matrix) exec harness matrix --results results/matrix.jsonl --report report.html "$@" ;;
    test)   exec pytest -n 2 "$@" ;;
    *)      echo "usage: bash dev.sh matrix|test [args...]" >&2; exit 2 ;;
esac
