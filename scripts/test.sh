#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
#   bash scripts/test.sh            # whole suite
#   bash scripts/test.sh -k fidelity  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch is pinned inside the [dev] extra (an unpinned torch pulls GBs of CUDA wheels).
# [dev] also holds the identify extra's packages (dlib-bin, face-recognition-models: a 100 MB
# source archive of model files), so tests/test_identify.py runs for real.
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
# facenet-pytorch: the source of the weights and the peer; it pins torch<2.3, hence --no-deps.
"$PY" -m pip install -q --disable-pip-version-check --no-deps facenet-pytorch==2.6.0
# the ray extra, pinned (tests/test_ray.py starts a real cluster): what Python 3.11 gets here
"$PY" -m pip install -q --disable-pip-version-check "ray[data]==2.60.0"
bash scripts/install_system_deps.sh
# lint and type checks first: they take seconds and name the line
"$PY" -m ruff check livefaces tests scripts
"$PY" -m mypy livefaces
exec "$PY" -m pytest "$@"
