#!/usr/bin/env bash
# Builds the Captum Insights test environment (make insights-env), offline except PyPI and apt:
#   * a virtualenv (default .venv-insights) with captum 0.8.0 (the last release that ships
#     Insights), numpy < 2, flask, flask-compress, selenium, torch 2.13.0 (CPU) and this
#     package (editable), pinned by ci/insights-constraints.txt;
#   * Debian's chromium and chromium-driver for the browser test, when missing and apt-get
#     can run (root). Without them the browser test skips and says why; the Flask test does not
#     need them.
# Re-running is cheap: the virtualenv is rebuilt only when its inputs change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-insights}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"

if [ ! -f "$STAMP" ] || [ ci/insights-constraints.txt -nt "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    "$PYTHON" -m venv "$VENV"
    # torch first and pinned: an unpinned torch would pull a CUDA build.
    "$VENV/bin/python" -m pip install -q torch==2.13.0
    "$VENV/bin/python" -m pip install -q -c ci/insights-constraints.txt \
        -e ".[insights,demo]" pytest selenium
    touch "$STAMP"
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "insights-env: installing chromium and chromium-driver (apt-get)"
        if ! { apt-get update -q >/dev/null \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                chromium chromium-driver >/dev/null; }; then
            echo "insights-env: could not install chromium; the browser test will skip" >&2
        fi
    else
        echo "insights-env: no chromium (needs root and apt-get); the browser test will skip" >&2
    fi
fi
