"""
Generate lensing images with the shipped diffusion model
========================================================

The default generator, ``Generator.from_pretrained()`` (``ddpm-deeplense-ii``), is a
class-conditional diffusion model of noise-free DeepLense Model II lensing images (64x64
pixels of 0.101"; no substructure, CDM subhalos, axion vortices). First, what its
benchmark measured: the figures are read from the JSON the benchmark command wrote. Then
it draws a few images of each class with a short DDIM run, and they are set beside
images simulated with the preset it was trained on: side by side, then through two
simple statistics over the images (the mean radial profile and the pixel histogram),
each next to the difference between two simulated sets of the same size, the floor that
any difference has to be read against.
"""

# %%
# What the benchmark says
# -----------------------
# ``lensenhance benchmark generate`` wrote ``benchmark_results/generate_n1000.json``; the
# table is that file as the command prints it (the README shows the same). The gallery
# runs each example in its own folder, ``examples/``; the repository root holds
# ``benchmark_results/``.

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval

import lensenhance as le
from lensenhance.benchmark.generate import format_generate_table
from lensenhance.evaluate.metrics import pixel_histogram_distance
from lensenhance.pretrained import model_card

results = next(folder / "benchmark_results" for folder in (Path.cwd(), *Path.cwd().parents)
               if (folder / "benchmark_results").is_dir())
benchmark = json.loads((results / "generate_n1000.json").read_text())
print(benchmark["command"], end="\n\n")
print(format_generate_table(benchmark))

generator = le.Generator.from_pretrained(device="cpu")
card = model_card(generator.name)
print(f"\n{generator}")
print(f"trained {card['steps']} of {card['planned_steps']} planned steps "
      f"({card['wall_time_s']:.0f} s on {card['machine']}); the weights benchmarked are "
      f"the ones loaded: {benchmark['weights_sha256'] == generator.weights_sha256}")

# %%
# Each target is marked met or not. The distances are many times their real-vs-real
# floor, so the generated images are still measurably unlike the simulated ones in the
# classifier's features. Does each class come out as asked? The classifier's accuracy on
# the generated images of each class (their conditioning class as the truth), beside its
# accuracy on held-out simulated images and the target, 0.9 of that:

classes = list(benchmark["real_accuracy_per_class"])
real = np.array([benchmark["real_accuracy_per_class"][c] for c in classes])
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
positions = np.arange(len(classes))
bars = [("simulated (held out)", real, benchmark["n"])] + [
    (f"{row['sampler']}-{row['steps']}",
     np.array([row["accuracy_per_class"][c] for c in classes]), row["n"])
    for row in benchmark["rows"]]
width = 0.8 / len(bars)
for k, (label, accuracy, n) in enumerate(bars):
    ax.bar(positions + (k - (len(bars) - 1) / 2) * width, accuracy, width,
           label=f"{label} (n = {n})")
target = benchmark["targets"]["conditional_fidelity_min"]
ax.hlines(target * real, positions - 0.4, positions + 0.4, colors="k", linestyles="--",
          label=f"target: {target:g} x simulated")
ax.set_xticks(positions, classes)
ax.set_ylabel(f"accuracy of {benchmark['classifier']}")
ax.set_ylim(0, 1.05)
ax.legend(fontsize=8, loc="lower left")
plt.show()

# %%
# Generate and simulate
# ---------------------
# 30 images, the three classes in turn, 50 DDIM steps (the sampler of the headline row).
# The simulated images are the simulator's noise-free ``hr`` images of the same preset,
# two independent sets of the same size: one to compare with, one for the floor.

n_images, steps = 30, 50
generated = generator.generate(n_images, steps=steps, sampler="ddim", seed=0, progress=False)

sim = le.LensSimulator.from_preset(generator.preset, substructure="all", seed=2028)
reference = sim.simulate_pairs(n_images, progress=False)["hr"]
simulated = reference.values
floor_set = sim.simulate_pairs(n_images, progress=False)["hr"].values
gen = generated.values
print(f"generated {gen.shape}, simulated {simulated.shape} and {floor_set.shape} "
      f"({generator.preset}), unit {generated.attrs['unit']}")

# %%
# Side by side
# ------------
# One asinh stretch for all panels, fitted to the simulated images.

norm = ImageNormalize(simulated, interval=PercentileInterval(99.8), stretch=AsinhStretch(0.02))
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4), layout="constrained")
for i in range(6):
    axes[0, i].imshow(gen[i], origin="lower", cmap="magma", norm=norm)
    axes[0, i].set_title(f"generated, {generated['substructure'].values[i]}", fontsize=9)
    axes[1, i].imshow(simulated[i], origin="lower", cmap="magma", norm=norm)
    axes[1, i].set_title(f"simulated, {reference['substructure'].values[i]}", fontsize=9)
for ax in axes.flat:
    ax.set_axis_off()
plt.show()

# %%
# Radial profile
# --------------
# The mean surface brightness in rings about the image centre, where the lens is, per
# image; the band is the spread (16th to 84th percentile) over the images of each set.


def radial_profiles(images, pixel_scale, n_rings=16):
    """Mean of each ring of width 2 pixels about the centre, for every image."""
    size = images.shape[-1]
    y, x = np.indices((size, size)) - (size - 1) / 2
    ring = (np.hypot(y, x) // 2).astype(int).ravel()
    keep = ring < n_rings
    profiles = [np.bincount(ring[keep], weights=image.ravel()[keep], minlength=n_rings)
                / np.bincount(ring[keep], minlength=n_rings) for image in images]
    return (np.arange(n_rings) * 2 + 1) * pixel_scale, np.array(profiles)


fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for label, images in (("generated", gen), ("simulated", simulated)):
    radius, profiles = radial_profiles(images, generator.pixel_scale)
    ax.plot(radius, np.median(profiles, axis=0), label=f"{label} (median, n = {len(images)})")
    ax.fill_between(radius, *np.percentile(profiles, [16, 84], axis=0), alpha=0.3)
ax.set_yscale("log")
ax.set_xlabel("radius [arcsec]")
ax.set_ylabel(f"mean in ring [{generated.attrs['unit']} per pixel]")
ax.legend()
plt.show()

# %%
# Pixel histogram, with its floor
# -------------------------------
# In the asinh stretch the model works in (in flux units almost every pixel is in the
# lowest bins). The Jensen-Shannon distance between the histograms of the generated and
# a simulated set is compared with the same distance between the two simulated sets, on
# one fixed binning.

scaled = {"generated": generator.scaling.apply(gen),
          "simulated": generator.scaling.apply(simulated),
          "simulated (second set)": generator.scaling.apply(floor_set)}
edges = (min(s.min() for s in scaled.values()), max(s.max() for s in scaled.values()))
distance = pixel_histogram_distance(scaled["generated"], scaled["simulated"], range=edges)
floor = pixel_histogram_distance(scaled["simulated (second set)"], scaled["simulated"],
                                 range=edges)
print(f"pixel-histogram JS distance, generated vs simulated: {distance:.3f}; "
      f"simulated vs simulated (floor): {floor:.3f} (n = {n_images} images per set, "
      f"{steps} DDIM steps)")

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for label, values in scaled.items():
    ax.hist(values.ravel(), bins=64, range=edges, histtype="step", density=True, label=label)
ax.set_yscale("log")
ax.set_xlabel("asinh-scaled pixel value")
ax.set_ylabel("density")
ax.legend()
plt.show()

# %%
# A few dozen images and two simple statistics cannot rank generators; the benchmark at
# the top does that with a thousand images per row and the classifier's features.
