#!/usr/bin/env bash
# Domain shift, measured (docs/FINETUNE.md, "Measured: a domain shift"): a base trained on OSIE only (readout on
# frozen ImageNet features), fine-tuned with `foveal finetune` on 100 NUS Scene train images, then the base, the
# fine-tuned model and the shipped foveal-lite0 scored with `foveal eval` on NUS Scene test (fp32 graphs).
# With --lodo, also the reverse leave-one-dataset-out base (NUS Scene only, same recipe) scored on OSIE test.
# Usage: benchmarks/finetune_domain_shift.sh DATA_DIR OUT_DIR [--lodo]   (from the repository root)
set -euo pipefail
data=${1:?DATA_DIR holding osie/ and scene/}
out=${2:?OUT_DIR}
lodo=${3:-}
mkdir -p "$out"
export PYTHONPATH=python:.
base_recipe=(--finetune-from 0 --readout-epochs 20 --threads 2)
python -m engine.train --data "$data" --datasets osie --out "$out/osie-base" --name osie-lite0 \
    --version 0.0.0-osie --cache "$out/cache" "${base_recipe[@]}"
/usr/bin/time -f "finetune wall %e s, max RSS %M KiB" \
    python -m foveal finetune "$data/scene" -o "$out/scene100" --base "$out/osie-base" --train-images 100 \
    --epochs 10 --seed 0
for model in "$out/osie-base/osie-lite0.onnx" "$out/scene100" foveal-lite0; do
    python -m foveal eval --dataset "$data/scene" --split test --model "$model" --precision fp32 --quiet \
        -o "$out/eval/scene-test-$(basename "$model" .onnx)"
done
if [[ "$lodo" == --lodo ]]; then
    python -m engine.train --data "$data" --datasets scene --out "$out/scene-base" --name scene-lite0 \
        --version 0.0.0-scene --cache "$out/cache" "${base_recipe[@]}"
    python -m foveal eval --dataset "$data/osie" --split test --model "$out/scene-base/scene-lite0.onnx" \
        --precision fp32 --quiet -o "$out/eval/osie-test-scene-lite0"
fi
