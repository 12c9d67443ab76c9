#!/usr/bin/env bash
# The runs behind the conditional diffusion models, one after another (2 cores: never two
# at once). Each resumes from its latest checkpoint; rerun after an interruption.
set -u
cd "$(dirname "$0")/.."
LE=${LE:-.venv/bin/lensenhance}
HSC=${HSC:-../shared/data/hsc_wide_dud}
export OMP_NUM_THREADS=1
# A training started by an earlier queue: wait for it (never two at once).
while pgrep -f "lensenhance -q train" > /dev/null; do sleep 20; done
done_run() { [ -f "training_runs/$1/weights.safetensors" ] && echo "=== $1: finished earlier"; }
start() { echo "=== $1 $(date -u +%FT%TZ)"; }
# 1. The deterministic denoiser (image + sigma -> noise-free sky): simulated Model II pairs
#    over 10^1.5-10^3.5 s exposures.
done_run raunet-denoise || { start raunet-denoise;
  $LE -q train denoiser --steps 3000 --workers 2 --out training_runs/raunet-denoise --resume; }
# 2. The residual diffusion around its mean (the same simulated pairs).
done_run diffusion-denoise || { start diffusion-denoise;
  $LE -q train posterior --task denoise --base training_runs/raunet-denoise/weights.safetensors \
    --steps 4000 --workers 2 --out training_runs/diffusion-denoise --resume; }
# 3. Both fine-tuned on the HSC train split (less its calibration hold-out), Wide -> Deep.
done_run raunet-denoise-hsc || { start raunet-denoise-hsc;
  $LE -q train denoiser --hsc "$HSC" --init training_runs/raunet-denoise/weights.safetensors \
    --steps 600 --lr 2e-4 --out training_runs/raunet-denoise-hsc --resume; }
done_run diffusion-denoise-hsc || { start diffusion-denoise-hsc;
  $LE -q train posterior --task denoise --hsc "$HSC" \
    --base training_runs/raunet-denoise-hsc/weights.safetensors \
    --init training_runs/diffusion-denoise/weights.safetensors \
    --steps 1000 --lr 1e-4 --out training_runs/diffusion-denoise-hsc --resume; }
# 4. Super-resolution x2 around edsr-x2 (Model I pairs).
done_run diffusion-sr-x2 || { start diffusion-sr-x2;
  $LE -q train posterior --task sr --base edsr-x2 --steps 3000 --workers 2 \
    --out training_runs/diffusion-sr-x2 --resume; }
