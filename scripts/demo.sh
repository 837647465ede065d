#!/usr/bin/env bash
# The main job on CPU: generate phantoms (once), train the phantom experiment, test its best
# checkpoint, print the per-task ID/OOD table and write it to results/demo/leaderboard.csv.
# Every run gets its own folder results/phantoms/<run id>/ (never reused).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
export CARE_PHANTOMS=${CARE_PHANTOMS:-data/phantoms}
RUN_ID=${CARE_RUN_ID:-demo-$(date +%Y%m%d-%H%M%S)}
start=$(date +%s)

if [ ! -f "$CARE_PHANTOMS/phantoms.json" ]; then
  "$BIN/care-cardiac" phantoms --out "$CARE_PHANTOMS" --seed 0 --eval-cases 4 --val-cases 2
fi
CARE_RUN_ID=$RUN_ID "$BIN/care-cardiac" fit --config experiments/phantoms.yaml
CARE_RUN_ID=$RUN_ID-test "$BIN/care-cardiac" test --config experiments/phantoms.yaml \
  --ckpt_path "results/phantoms/$RUN_ID/checkpoints/best.ckpt" \
  --results.leaderboard_path results/demo/leaderboard.csv

echo
echo "== CARE-Cardiac phantom leaderboard (run $RUN_ID, $(( $(date +%s) - start )) s) =="
"$BIN/python" -c "import pandas as pd; print(pd.read_csv('results/demo/leaderboard.csv').round(3).to_string(index=False))"
echo "per-case rows: results/phantoms/$RUN_ID-test/test_cases.csv   checkpoint: results/phantoms/$RUN_ID/checkpoints/best.ckpt"
