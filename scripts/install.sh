#!/usr/bin/env bash
# Create ./.venv (if missing) and install xlm-core + the families xlm-arlm, xlm-mlm and xlm-mdlm (editable) with the
# test extras (which include wandb and mlflow-skinny for the logger tests) and the docs extras (mkdocs).
# PyTorch is installed first so that machines with a local CPU wheel (and CI) take it instead of a
# multi-GB CUDA build; set XLM_TORCH_SPEC to choose another build, e.g. XLM_TORCH_SPEC="torch>=2.13".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet "${XLM_TORCH_SPEC:-torch==2.13.0}"
fi
python -m pip install --quiet -e ".[test,docs,dev]" -e xlm_plugins/arlm -e xlm_plugins/mlm -e xlm_plugins/mdlm
python -c "import torch, xlm_core, xlm_arlm, xlm_mlm, xlm_mdlm; print(f'xlm installed (torch {torch.__version__}) in .venv')"
