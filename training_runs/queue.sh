#!/usr/bin/env bash
# The training runs behind the shipped SR weights, one after another (2 cores: never two
# at once). Every run resumes from its latest checkpoint, so rerunning this script after
# an interruption continues where it stopped; a finished run is skipped.
set -u
cd "$(dirname "$0")/.."
LE=${LE:-.venv/bin/lensenhance}
run() {  # name, then train-sr options
    local name=$1; shift
    if [ -f "training_runs/$name/weights.safetensors" ]; then
        echo "=== $name: finished earlier"; return
    fi
    echo "=== $name $(date -u +%FT%TZ)"
    # Defaults first: options given to run() come later and win.
    $LE -q train sr --n-train 4000 --data-seed 1 "$@" --out "training_runs/$name" --resume
}
run fsrcnn-x2   --model fsrcnn   --scale 2 --steps 4000 --val-every 500
run edsr-x2     --model edsr     --scale 2 --steps 1500 --val-every 250
run rcan-x2     --model rcan     --scale 2 --steps 3000 --val-every 500
run rdn-x2      --model rdn      --scale 2 --steps 2000 --val-every 500
run srresnet-x2 --model srresnet --scale 2 --steps 2000 --val-every 500
run edsr-x4     --model edsr     --scale 4 --steps 3000 --val-every 500
# The frozen network of the feature loss (not used by the runs above, which train on L1).
if [ ! -f training_runs/thetae-resnet/weights.safetensors ]; then
    echo "=== thetae-resnet $(date -u +%FT%TZ)"
    $LE -q train features -n 2000 --n-val 200 --epochs 15 --out training_runs/thetae-resnet
fi
# The generator's chain model: noise-free 64 px Model-II images -> 128 px.
run edsr-lens64-x2 --model edsr --scale 2 --steps 500 --val-every 100 --preset model_ii \
    --lr-on-preset-grid --noise-free-lr --n-train 3000 --data-seed 21 --workers 2
# The classifier whose features measure generated images (retrained from scratch if its
# weights are missing; it has no checkpoints).
if [ ! -f training_runs/lens-classifier/weights.safetensors ]; then
    echo "=== lens-classifier $(date -u +%FT%TZ)"
    $LE -q train classifier -n 3000 --n-val 450 --epochs 15 --workers 2 \
        --out training_runs/lens-classifier
fi
# The generator: 30000 steps (about 8 h of one CPU core); resumable, run it in shares.
echo "=== ddpm-lens64 $(date -u +%FT%TZ)"
OMP_NUM_THREADS=1 $LE -q train ddpm --out training_runs/ddpm-lens64 --workers 2 --resume
# Then, for each run: python -m lensenhance.publish training_runs/NAME NAME
# (ddpm-lens64: publish, lensenhance benchmark generate --json B.json, publish with B.json)
echo "=== done $(date -u +%FT%TZ)"
