#!/usr/bin/env bash
# Create (if missing) a Python venv outside the repository with the pinned
# torch, numpy, safetensors, onnx and onnxscript from
# scripts/requirements-torch.txt (PyPI only), then print the venv's python path
# on the last line.
#
#   LENET_JACOBIAN_VENV   venv directory (default: ~/.cache/lenet-jacobian/torch-venv)
#   PYTHON                interpreter used to create it (default: python3)
#
# Idempotent: an existing venv is reused, and pip is skipped when the pinned
# versions are already installed.
#
# Example:
#   PY=$(scripts/setup_torch_venv.sh | tail -n 1)
#   "$PY" scripts/make_torch_fixtures.py
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements-torch.txt"
venv="${LENET_JACOBIAN_VENV:-$HOME/.cache/lenet-jacobian/torch-venv}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating venv at $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"

# Are the pinned versions already there? (compares "name==version" lines)
installed_ok() {
    "$py" - "$req" <<'PYEOF'
import sys
from importlib import metadata
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        have = metadata.version(name.strip())
    except metadata.PackageNotFoundError:
        ok = False
        continue
    # torch wheels carry a local suffix such as "+cpu" or "+cu132".
    if want and have.split("+", 1)[0] != want.strip():
        ok = False
sys.exit(0 if ok else 1)
PYEOF
}

if installed_ok; then
    echo "pinned packages already installed in $venv" >&2
else
    echo "installing $(grep -v '^#' "$req" | xargs) into $venv" >&2
    "$py" -m pip install --disable-pip-version-check -r "$req" >&2
fi

"$py" -c "import torch, numpy, safetensors, onnx, onnxscript" >&2
echo "$py"
