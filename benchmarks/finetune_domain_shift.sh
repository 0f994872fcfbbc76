#!/usr/bin/env bash
# Domain shift, measured: a base trained on OSIE only (readout on frozen ImageNet features, as in docs/FINETUNE.md),
# fine-tuned with `foveal finetune` on 100 NUS Scene train images, scored on NUS Scene test against that base.
# Usage: benchmarks/finetune_domain_shift.sh DATA_DIR OUT_DIR   (from the repository root; OUT_DIR must not exist)
set -euo pipefail
data=${1:?DATA_DIR holding osie/ and scene/}
out=${2:?OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=python:.
python -m engine.train --data "$data" --datasets osie --out "$out/osie-base" --name osie-lite0 \
    --version 0.0.0-osie --finetune-from 0 --readout-epochs 20 --cache "$out/cache" --threads 2
/usr/bin/time -f "finetune wall %e s, max RSS %M KiB" \
    python -m foveal finetune "$data/scene" -o "$out/scene100" --base "$out/osie-base" --train-images 100 \
    --epochs 10 --seed 0
