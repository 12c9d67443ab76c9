#!/usr/bin/env bash
# The runs behind the conditional diffusion models, one after another (2 cores: never two
# at once). Each resumes from its latest checkpoint; rerun after an interruption.
set -u
cd "$(dirname "$0")/.."
LE=${LE:-.venv/bin/lensenhance}
export OMP_NUM_THREADS=1
done_run() { [ -f "training_runs/$1/weights.safetensors" ] && echo "=== $1: finished earlier"; }
# 1. The deterministic denoiser (image + sigma -> noise-free sky): simulated Model II pairs
#    over 10^1.5-10^3.5 s exposures.
done_run raunet-denoise || { echo "=== raunet-denoise $(date -u +%FT%TZ)";
  $LE -q train denoiser --steps 3000 --workers 2 --out training_runs/raunet-denoise --resume; }
# 2. The residual diffusion around its mean (same simulated pairs).
done_run diffusion-denoise || { echo "=== diffusion-denoise $(date -u +%FT%TZ)";
  $LE -q train posterior --task denoise --base training_runs/raunet-denoise/weights.safetensors \
    --steps 4000 --workers 2 --out training_runs/diffusion-denoise --resume; }
# 3. Super-resolution x2 around edsr-x2 (Model I pairs).
done_run diffusion-sr-x2 || { echo "=== diffusion-sr-x2 $(date -u +%FT%TZ)";
  $LE -q train posterior --task sr --base edsr-x2 --steps 4000 --workers 2 \
    --out training_runs/diffusion-sr-x2 --resume; }
