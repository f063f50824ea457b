#!/bin/sh
# Inference container: check the settings, say where predictions will run, then run the command
# (`medtune serve`, from the image CMD or the compose file). No GPU is not fatal here, unlike the
# training worker: a CPU answers predictions, only slower. INFERENCE_REQUIRE_GPU=1 makes it fatal.
set -eu

# A missing, empty or short de-identification secret ends the container with its reason.
python -c 'from platform_core.config import check_or_exit; check_or_exit()'

if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  if [ "${INFERENCE_REQUIRE_GPU:-0}" = "1" ]; then
    echo "medtune inference: no CUDA device visible; check the NVIDIA Container Toolkit and the GPU" \
      "reservation, or unset INFERENCE_REQUIRE_GPU to serve on the CPU" >&2
    exit 1
  fi
  echo "medtune inference: no CUDA device visible; serving on the CPU" >&2
fi

exec "$@"
