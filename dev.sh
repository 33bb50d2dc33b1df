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

if [ ! -x .venv/bin/python ]; then
    py=$(pick_python)
    "$py" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
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
