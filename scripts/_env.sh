# Sourced by the scripts: make sure .venv exists and holds the project with the extras the
# calling script needs, then put .venv/bin first on PATH and cd to the repository.
#
# CQRS_EXTRAS names the extra set (default "dev": the tests and linters; ./scripts/demo sets
# "demo": fastapi, uvicorn, SQLAlchemy with aiosqlite). Each set has its own stamp, .venv/.cqrs-installed-<set>,
# and is re-installed only when pyproject.toml changed since that stamp. "dev" contains
# "demo" (see pyproject.toml), so a fresh dev install also serves the demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
CQRS_EXTRAS="${CQRS_EXTRAS:-dev}"

case "$CQRS_EXTRAS" in
    demo) _what="the demo's dependencies (fastapi, uvicorn, SQLAlchemy with aiosqlite); under a minute the first time" ;;
    dev) _what="the test and lint tools; a few minutes the first time" ;;
    *) _what="the extras [$CQRS_EXTRAS]" ;;
esac
case "$CQRS_EXTRAS" in
    demo) _satisfied_by="demo dev" ;;
    *) _satisfied_by="$CQRS_EXTRAS" ;;
esac

_cqrs_installed() {
    local set stamp
    for set in $_satisfied_by; do
        stamp="$VENV/.cqrs-installed-$set"
        if [ -f "$stamp" ] && ! [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
            return 0
        fi
    done
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "$(basename "$0"): creating the virtual environment .venv with $PYTHON_BIN" >&2
    "$PYTHON_BIN" -m venv "$VENV"
fi
if ! _cqrs_installed; then
    echo "$(basename "$0"): installing cqrs-kit[$CQRS_EXTRAS] into .venv: $_what..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$CQRS_EXTRAS]"
    touch "$VENV/.cqrs-installed-$CQRS_EXTRAS"
fi
unset -f _cqrs_installed
unset _what _satisfied_by
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
