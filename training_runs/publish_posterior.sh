#!/usr/bin/env bash
# Publish the conditional diffusion models once their runs (queue_posterior.sh) are done:
# install the weights, fit the std's calibration on a held-out set, benchmark, and write
# the figures into the cards. Run from the repository root; each step is one command.
set -eu
PY=${PY:-.venv/bin/python}
LE=${LE:-.venv/bin/lensenhance}
HSC=${HSC:-../shared/data/hsc_wide_dud}
step=${1:-all}
if [ "$step" = all ] || [ "$step" = denoise ]; then
  $PY -m lensenhance.publish training_runs/raunet-denoise raunet-denoise
  $PY -m lensenhance.publish training_runs/diffusion-denoise diffusion-denoise \
      --base raunet-denoise --calibrate denoise --n-cal 64
  $LE -q benchmark denoise -n 100 --workers 2 --overwrite \
      --json benchmark_results/denoise_n100.json --plot benchmark_results/denoise_panels \
      | tee benchmark_results/denoise_n100.txt
  for name in raunet-denoise diffusion-denoise; do
    $PY -m lensenhance.publish training_runs/$name $name --figures benchmark_results/denoise_n100.json
  done
fi
if [ "$step" = all ] || [ "$step" = hsc ]; then
  $PY -m lensenhance.publish training_runs/raunet-denoise-hsc raunet-denoise-hsc
  $PY -m lensenhance.publish training_runs/diffusion-denoise-hsc diffusion-denoise-hsc \
      --base raunet-denoise-hsc --hsc "$HSC" --n-cal 96
  $LE -q benchmark denoise --real "$HSC" -n 132 --overwrite \
      --json benchmark_results/denoise_hsc_val.json --plot benchmark_results/denoise_hsc_panels \
      | tee benchmark_results/denoise_hsc_val.txt
  for name in raunet-denoise-hsc diffusion-denoise-hsc; do
    $PY -m lensenhance.publish training_runs/$name $name --figures benchmark_results/denoise_hsc_val.json
  done
fi
if [ "$step" = all ] || [ "$step" = sr ]; then
  $PY -m lensenhance.publish training_runs/diffusion-sr-x2 diffusion-sr-x2 \
      --base edsr-x2 --calibrate sr --n-cal 32
  $LE -q benchmark sr -n 100 --model edsr-x2 --model rdn-x2 --model diffusion-sr-x2 \
      --no-self-ensemble --no-regression --json benchmark_results/sr_x2_diffusion_n100.json \
      | tee benchmark_results/sr_x2_diffusion_n100.txt
  $PY -m lensenhance.publish training_runs/diffusion-sr-x2 diffusion-sr-x2 \
      --figures benchmark_results/sr_x2_diffusion_n100.json
fi
