#!/usr/bin/env bash
# CI: run the tests that touch Optuna's internals on the oldest Optuna nbtune allows.
#
# nbtune allows optuna>=5.0,<6 and reaches Optuna's internals only through nbtune/_optuna.py.
# The main CI run (.ci/run) tests the newest Optuna that pip picks; this one installs the oldest
# (OPTUNA_OLDEST) with nbtune's storage extras, without torch, gymnasium or the widgets, into a
# throwaway virtual environment, and runs the door, storage, study-view and budget tests there
# (the toy training script needs only tensorboard). Called by .ci/run; about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
OPTUNA_OLDEST="${OPTUNA_OLDEST:-5.0.0}"
PYTHON="${PYTHON:-python3}"
tmp="$(mktemp -d -t nbtune-optuna-oldest-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

echo "== optuna_versions: nbtune on optuna==$OPTUNA_OLDEST"
"$PYTHON" -m venv "$tmp/venv"
# psycopg2-binary too (as the test extra has it): nbtune still opens plain postgresql:// URLs
# where only psycopg2 is installed, and a test checks it.
"$tmp/venv/bin/python" -m pip install -q -e ".[postgres,mysql]" pytest pytest-timeout \
    psycopg2-binary "optuna==$OPTUNA_OLDEST"
installed="$("$tmp/venv/bin/python" -c 'import optuna; print(optuna.__version__)')"
if [ "$installed" != "$OPTUNA_OLDEST" ]; then
    echo "optuna_versions.sh: asked for optuna $OPTUNA_OLDEST, got $installed" >&2
    exit 1
fi
# Left out: the wandb test (wandb is not installed here; it has nothing to do with Optuna's
# internals) and the slowest outage and password tests (minutes; the main run has them).
"$tmp/venv/bin/python" -m pytest -o addopts="" -q -p no:cacheprovider \
    tests/test_optuna_door.py tests/test_study_view.py tests/test_persist.py \
    tests/test_storages.py \
    -k "not wandb and not no_password_in_any_output and not ride_out and not during_an_outage"
echo "== optuna_versions: tests passed on optuna $installed"
