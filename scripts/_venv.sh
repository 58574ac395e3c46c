# Sourced by scripts/test and scripts/demo: make sure .venv exists and holds callstate
# installed (editable) with the extras named in $CALLSTATE_EXTRAS.
#
# The install is repeated only when pyproject.toml or the extras changed since the last
# successful one, so a second run starts at once; a fresh clone installs everything.

set -euo pipefail

_python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

_find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && _python_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    echo "callstate needs Python >= 3.11; none found (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

if [ -x .venv/bin/python ] && ! _python_ok .venv/bin/python; then
    echo "scripts: .venv is broken or older than Python 3.11; recreating it" >&2
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    py="$(_find_python)"
    echo "scripts: creating .venv with $($py --version)" >&2
    "$py" -m venv .venv
fi

_stamp=".venv/.callstate-install-${CALLSTATE_EXTRAS:-core}"
_want="$(cat pyproject.toml)"
_want_hash="$(printf '%s' "$_want" | .venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want_hash" ]; then
    echo "scripts: installing callstate${CALLSTATE_EXTRAS:+[$CALLSTATE_EXTRAS]} into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${CALLSTATE_EXTRAS:+[$CALLSTATE_EXTRAS]}"
    echo "$_want_hash" > "$_stamp"
fi
