"""
Fine-tune a shipped model on your own image pairs
=================================================

The shipped x2 models were trained on Model-I-like simulations. Images of another
instrument call for fine-tuning on pairs of that instrument: low-resolution images and
the high-resolution images they should become. This example writes such pairs as FITS
files with a catalogue (here simulated HST WFC3 F160W-like lenses stand in for "your own"
data), fine-tunes ``fsrcnn-x2`` on them from its shipped weights for a few steps, loads
the result with `lensenhance.Enhancer`, and compares it with the shipped weights on
held-out pairs.

A few steps on a CPU prove the workflow, not a better model: a real fine-tuning runs for
thousands of steps on many more pairs, and is judged on many more held-out images.
"""

# %%
# Your pairs, as FITS files and a catalogue
# -----------------------------------------
# Any pairs work whose high-resolution image is twice as fine, pixel for pixel aligned
# with the low-resolution one (here 32x32 pixels of 0.16" and 64x64 of 0.08"). The
# catalogue needs the columns ``lr_path`` and ``hr_path``, relative to its folder. 40
# pairs are written for fine-tuning (32 to train on, 8 to validate); 8 more, simulated
# separately, are held out for the comparison at the end.

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from astropy.nddata import CCDData
from astropy.table import Table
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval

import lensenhance as le
from lensenhance.evaluate.metrics import batch_metrics, mean_and_se, paired_differences
from lensenhance.training import train_sr
from lensenhance.training.data import training_pairs

folder = tempfile.TemporaryDirectory()
work = Path(folder.name)
sim = le.LensSimulator.from_preset("model_iii", substructure="all", seed=2029)
own = sim.simulate_pairs(40, scale=2, progress=False)
held_out = sim.simulate_pairs(8, scale=2, progress=False)

rows = []
for kind in ("lr", "hr"):
    (work / "pairs" / kind).mkdir(parents=True)
for i in range(own.sizes["image"]):
    for kind in ("lr", "hr"):
        image = CCDData(own[kind].values[i], unit=own.attrs["unit"])
        le.write_image(image, work / "pairs" / kind / f"{i:03d}.fits")
    rows.append((f"pairs/lr/{i:03d}.fits", f"pairs/hr/{i:03d}.fits"))
catalog = work / "pairs.ecsv"
Table(rows=rows, names=("lr_path", "hr_path")).write(catalog)
print(f"{len(rows)} pairs: LR {own['lr'].shape[1:]}, HR {own['hr'].shape[1:]}; "
      f"{held_out.sizes['image']} held out")

# %%
# Fine-tune from the shipped weights
# ----------------------------------
# ``training_pairs`` reads the catalogue, holds back ``n_val`` pairs for validation and
# normalises every pair exactly as the Enhancer normalises its input. ``init=`` starts
# `train_sr` from the shipped weights (a model's name or a weights file). The command
# line does the same::
#
#     lensenhance train sr --init fsrcnn-x2 --data pairs.ecsv --steps 2000 --out run
#
# The run folder gets checkpoints, a history and ``weights.safetensors``, the
# exponential moving average of the weights (its metadata name the initial weights and
# their SHA-256).

source, validation = training_pairs(catalog, scale=2, patch_size=32, n_val=8,
                                    progress=False)
steps = 60
history = train_sr(init="fsrcnn-x2", scale=2, data=source, val_data=validation, steps=steps,
                   out_dir=work / "run", batch_size=8, lr=1e-4, ema_decay=0.99,
                   val_every=20, checkpoint_every=steps, progress=False, device="cpu",
                   metadata={"note": "fine-tuned from fsrcnn-x2 in an example"})
for record in history["val"]:
    print(f"step {record['step']:>4}: validation PSNR {record['psnr']:.2f} dB (mean over "
          f"n = {len(validation[0])} pairs, normalised, each its own data range)")
print(f"{history['step']} steps in {history['wall_time_s']:.0f} s: "
      f"{Path(history['weights']).name}")

# %%
# Load the result and compare on the held-out pairs
# -------------------------------------------------
# ``Enhancer(path, scale=2)`` loads a weights file written by the training (a
# ``torch.nn.Module`` works the same way). Both enhancers run on the 8 held-out
# observed images; PSNR and SSIM are against their noise-free HR images, with each
# truth's own range as the data range, and the difference is paired over the images.

enhancers = {"shipped fsrcnn-x2": le.Enhancer.from_pretrained("fsrcnn-x2", device="cpu"),
             "fine-tuned": le.Enhancer(history["weights"], scale=2, device="cpu"),
             "bicubic": le.Enhancer.interpolation("bicubic", scale=2, device="cpu")}
lr, hr = held_out["lr"].values, held_out["hr"].values
data_range = hr.max(axis=(1, 2)) - hr.min(axis=(1, 2))
predictions = {name: enhancer.enhance(lr) for name, enhancer in enhancers.items()}
scores = {name: batch_metrics(pred, hr, data_range=data_range)
          for name, pred in predictions.items()}
n = len(hr)
for name, score in scores.items():
    psnr, ssim = mean_and_se(score["psnr"]), mean_and_se(score["ssim"])
    print(f"{name:<18} PSNR {psnr['mean']:.2f} ± {psnr['se']:.2f} dB, "
          f"SSIM {ssim['mean']:.4f} ± {ssim['se']:.4f} (n = {n} held-out images)")
change = paired_differences({"fine-tuned": scores["fine-tuned"]["psnr"],
                             "shipped": scores["shipped fsrcnn-x2"]["psnr"]})
change = change["fine-tuned - shipped"]
print(f"PSNR fine-tuned - shipped: {change['mean']:+.2f} ± {change['se']:.2f} dB "
      f"(paired, n = {change['n']}, "
      f"{'significant' if change['significant'] else 'not significant'})")

# %%
# What this shows: the fine-tuned weights load and run like the shipped ones, and they
# have started to adapt to the new pixel grid and PSF. The held-out pairs come from the
# same simulator as the training pairs and are few; a model for real use needs many more
# pairs and steps, and held-out images that it is judged on before it is used.
#
# One held-out lens
# -----------------

k = 0
norm = ImageNormalize(hr[k], interval=PercentileInterval(99.5), stretch=AsinhStretch(0.05))
panels = {"observed (LR / 4)": lr[k] / 4, **{name: predictions[name][k] for name in enhancers},
          "noise-free HR": hr[k]}
fig, axes = plt.subplots(1, 5, figsize=(14, 3.2), layout="constrained")
for ax, (title, image) in zip(axes, panels.items()):
    ax.imshow(image, origin="lower", cmap="magma", norm=norm)
    if title in scores:
        title += f"\nPSNR {scores[title]['psnr'][k]:.1f} dB"
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
plt.show()

# %%
# The temporary folder goes with the example.

folder.cleanup()
