#!/usr/bin/env bash
# Set up, then run the pipeline on the bundled examples with the embedded OCR engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ocrflow run examples --out "${OUT:-ocrflow-out}" "$@"
