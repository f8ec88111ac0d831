#!/usr/bin/env bash
# Print the path of a working uv, installing it from PyPI into the user's site if needed.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
python3 -m pip install --quiet --user uv >&2 || python3 -m pip install --quiet uv >&2
command -v uv 2>/dev/null || echo "$(python3 -m site --user-base)/bin/uv"
