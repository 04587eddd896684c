#!/usr/bin/env bash
# The built wheel as a user gets it: installed into a clean venv (torch pinned first: the CPU
# build this machine carries; an unpinned torch would pull CUDA), then used from a folder outside
# the repository, so that `import captum_smooth` finds the installed wheel and not the source.
# Usage: ci/wheel-smoke.sh [DIST_DIR]   (default dist/; `make dist-check` builds it first)
set -euo pipefail
# Nothing of the caller's environment reaches the clean venv: a PYTHONPATH naming the checkout
# would show pip the source tree's captum_smooth.egg-info as an installed captum-smooth.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE
repo=$(cd "$(dirname "$0")/.." && pwd)
dist=$(cd "${1:-$repo/dist}" && pwd)
PYTHON=${PYTHON:-python3}

shopt -s nullglob
wheels=("$dist"/captum_smooth-*.whl)
if [ "${#wheels[@]}" -ne 1 ]; then
    echo "wheel-smoke: expected one captum_smooth wheel in $dist, found ${#wheels[@]}" >&2
    exit 1
fi
wheel=${wheels[0]}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
py="$work/venv/bin/python"
step() { echo "wheel-smoke: $1 (${SECONDS}s)"; }
# pip's own status decides (pipefail); only its notes about absent local index folders are dropped.
pip_install() { "$py" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
step "pip install torch==2.13.0"
pip_install torch==2.13.0
step "pip install $(basename "$wheel")"
pip_install -c "$repo/ci/constraints.txt" "$wheel"
step "used from $work"

cd "$work"
"$work/venv/bin/captum-smooth" --version
"$py" - <<'EOF'
import importlib.metadata
import importlib.resources
import pathlib
import sys

import torch

import captum_smooth
from captum_smooth import SmoothGrad

where = pathlib.Path(captum_smooth.__file__).resolve()
assert pathlib.Path(sys.prefix).resolve() in where.parents, f"imported from {where}"
assert captum_smooth.__version__ == importlib.metadata.version("captum-smooth")
package = importlib.resources.files("captum_smooth")
for name in ("py.typed", "app/data/imagenet_classes.txt"):
    assert package.joinpath(name).is_file(), f"{name} is not in the wheel"

torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
x = torch.rand(2, 4)
attr = SmoothGrad(model).attribute(x, target=1, nt_samples=8, stdevs=0.1, generator=0)
assert attr.shape == x.shape and torch.isfinite(attr).all()
# A linear model's gradient is its weight row whatever the noise; Saliency (the inner method)
# takes its absolute value.
torch.testing.assert_close(attr, model.weight[1].detach().abs().expand_as(x))
print(f"wheel-smoke: captum_smooth {captum_smooth.__version__} from {where.parent}: SmoothGrad ok")
EOF
