#!/usr/bin/env bash
# Check the Binder setup without docker, in two steps (called by .ci/run; about 5 minutes):
#  1. repo2docker reads binder/ and prints the Dockerfile it would build (--no-build);
#  2. binder/requirements.txt installs into a clean virtual environment, with this machine's
#     CPU torch in place of the PyTorch-index lines (which this machine cannot reach), and every
#     notebook passes `pytest --nbmake notebooks/` in it (smoke mode, see notebooks/conftest.py).
# Everything is made under one temporary folder, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
TORCH_LOCAL="${TORCH_LOCAL:-torch==2.13.0}"
tmp="$(mktemp -d -t nbtune-binder-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

echo "== binder: repo2docker --no-build"
python3 -m venv "$tmp/r2d"
"$tmp/r2d/bin/python" -m pip install -qq jupyter-repo2docker
if ! "$tmp/r2d/bin/repo2docker" --no-build --debug --user-id 1000 --user-name jovyan . \
    >"$tmp/repo2docker.log" 2>&1; then
    cat "$tmp/repo2docker.log"
    echo "binder/check.sh: repo2docker failed" >&2
    exit 1
fi
for expected in \
    'Building conda environment for python=3.11' \
    'pip install --no-cache-dir -r "binder/requirements.txt"' \
    'R2D_ENTRYPOINT="${REPO_DIR}/binder/start"'; do
    if ! grep -F -- "$expected" "$tmp/repo2docker.log"; then
        cat "$tmp/repo2docker.log"
        echo "binder/check.sh: repo2docker's Dockerfile lacks: $expected" >&2
        exit 1
    fi
done

echo "== binder: requirements in a clean virtual environment ($TORCH_LOCAL for torch)"
sed -e '/download\.pytorch\.org/d' -e "s/^torch==.*/$TORCH_LOCAL/" binder/requirements.txt \
    >"$tmp/requirements.txt"
python3 -m venv "$tmp/binder"
# From the repository root, as repo2docker runs it: "." is nbtune. The test runner is extra
# (Binder's image brings its own Jupyter and ipykernel; nbmake needs ipykernel too).
"$tmp/binder/bin/python" -m pip install -qq -r "$tmp/requirements.txt" nbmake pytest pytest-timeout

# Kernels must run the venv's Python, and nothing may come from $HOME's Jupyter or IPython.
export JUPYTER_CONFIG_DIR="$tmp/jupyter/config" JUPYTER_DATA_DIR="$tmp/jupyter/data"
export JUPYTER_RUNTIME_DIR="$tmp/jupyter/runtime" IPYTHONDIR="$tmp/ipython"
export PATH="$tmp/binder/bin:$PATH"
"$tmp/binder/bin/python" - "$tmp/binder" <<'EOF'
import sys
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

venv = Path(sys.argv[1]).resolve()
argv = KernelSpecManager().get_kernel_spec("python3").argv
exe = argv[0]
ok = exe in ("python", "python3", "{python}") or Path(exe).resolve().is_relative_to(venv)
print(f"kernel python3: {' '.join(argv[:3])}")
sys.exit(0 if ok else f"binder/check.sh: the python3 kernel does not run the venv's Python: {exe}")
EOF
"$tmp/binder/bin/python" -m pytest --nbmake notebooks/ -p no:cacheprovider -q
