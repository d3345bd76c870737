#!/usr/bin/env bash
# The colab-t4 measurement as one command on a lent GPU machine that has torch but not this project's other
# pins (no network there). Run from the repository root; writes docs/measurements/colab-t4.json and copies it,
# with the logs, to $OUT (default /tmp/erv-gpu-out).
#
# Carried beside the checkout (git-ignored), prepared on a machine with pip (see docs/measurements/README.md):
#   .whl/          wheels of the pinned trl, transformers, peft, datasets, dill, multiprocess, regex and
#                  bitsandbytes (its CUDA 13 libraries only: the others are dropped to fit the transfer limit)
#   .whl/alt/      datasets 4.8.4, used instead where the machine's pyarrow is older than datasets 5 needs
#   .measure/data/hf   the colab-t4 dataset (verifier.kind=tfidf, data.clips_per_class=2), built here with
#                  the same settings, since the synthetic clips' video encoder (PyAV) is not on that machine
#   .old/          optional: the previous commit's erv_lab and scripts, to show how it failed (last step)
set -uo pipefail
OUT=${OUT:-/tmp/erv-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
START=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
if python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) >= 24)" && ls .whl/alt/*.whl >/dev/null 2>&1; then
    echo "pyarrow < 24: datasets from .whl/alt"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/alt/*.whl || exit 3
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, trl, peft, bitsandbytes, datasets, pyarrow as pa; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, 'datasets', datasets.__version__, 'pyarrow', pa.__version__)" || exit 4
echo "== gpu-marked tests"
timeout "${TEST_TIMEOUT:-90}" python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_path.py 2>&1 | tail -5
echo "== measurement ($((SECONDS - START)) s so far)"
timeout "${MEASURE_TIMEOUT:-420}" python3 scripts/measure_gpu_preset.py --standin --t4 --set verifier.kind=tfidf \
    --set data.clips_per_class=2 --sft-steps 4 --grpo-steps 2 --out .measure --write docs/measurements/colab-t4.json
echo "measure rc=$? ($((SECONDS - START)) s so far)"
cp docs/measurements/colab-t4.json "$OUT/" 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv
if [ -d .old/erv_lab ] && [ $((SECONDS - START)) -lt "${OLD_BEFORE_S:-420}" ]; then
    echo "== the previous commit on the same path (expected to fail; 1 SFT step)"
    rm -rf .measure/sft
    PYTHONPATH=/tmp/site:$PWD/.old timeout "${OLD_TIMEOUT:-90}" python3 .old/scripts/measure_gpu_preset.py --standin --t4 \
        --set verifier.kind=tfidf --set data.clips_per_class=2 --sft-steps 1 --grpo-steps 1 --out .measure \
        > "$OUT/old.log" 2>&1
    echo "old rc=$?"; grep -E "Error|error|not implemented|stage" "$OUT/old.log" | tail -8
fi
echo "done in $((SECONDS - START)) s"
