"""
Generate lensing images with the shipped diffusion model
========================================================

``ddpm-lens64`` is a class-conditional diffusion model of noise-free Euclid VIS-like
lensing images (64x64 pixels of 0.101"). Here it draws a few images with a short DDIM
run, and they are set beside images simulated with the preset it was trained on: side by
side, then through two simple statistics over the images (the mean radial profile and
the pixel histogram), each next to the difference between two simulated sets of the same
size, the floor that any difference has to be read against. First, what its model card
says about how far it was trained.
"""

# %%
# What the model card says
# ------------------------
# Every figure below is read from the card, which the training and benchmark commands
# wrote.

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval

import lensenhance as le
from lensenhance.evaluate.metrics import pixel_histogram_distance
from lensenhance.pretrained import model_card

card = model_card("ddpm-lens64")
metrics = card["metrics"]
print(f"{card['name']}: {card['architecture']}, {card['parameters']:,} parameters, trained "
      f"on {card['training_images']} noise-free {card['preset']} images "
      f"({card['image_size']}x{card['image_size']} at {card['pixel_scale']}\"/px)")
print(f"finished: {card['finished']}; {card['steps']} of {card['planned_steps']} planned "
      f"steps ({card['wall_time_s']:.0f} s on {card['machine']})")
print(f"benchmark ({metrics['sampler']}, n = {metrics['n']}): FD {metrics['fd']:.2f} against "
      f"a real-vs-real floor of {metrics['fd_floor']:.2f} ({metrics['fd_ratio']:.1f}x), "
      f"KID {metrics['kid']:.3f} ± {metrics['kid_se']:.3f} against {metrics['kid_floor']:.3f}")

# %%
# The card says it plainly: the weights are an intermediate state of a longer run
# (``finished`` is false), and at this point the generated images are measurably unlike
# the simulated ones in the features of the shipped classifier: several times the
# distance between two simulated sets. Read what follows as a look at a part-trained
# model.
#
# Generate and simulate
# ---------------------
# 32 images, the three classes in turn, 50 DDIM steps (the sampler of the card's
# figures). The simulated images are the simulator's noise-free ``hr`` images of the same
# preset, two independent sets of the same size: one to compare with, one for the floor.

n_images, steps = 32, 50
generator = le.Generator.from_pretrained("ddpm-lens64", device="cpu")
print(generator)
generated = generator.generate(n_images, steps=steps, sampler="ddim", seed=0, progress=False)

sim = le.LensSimulator.from_preset("model_ii", substructure="all", seed=2028)
simulated = sim.simulate_pairs(n_images, scale=2, progress=False)["hr"].values
floor_set = sim.simulate_pairs(n_images, scale=2, progress=False)["hr"].values
gen = generated.values
print(f"generated {gen.shape}, simulated {simulated.shape} and {floor_set.shape}, "
      f"unit {generated.attrs['unit']}")

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
    axes[1, i].set_title("simulated", fontsize=9)
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
    radius, profiles = radial_profiles(images, card["pixel_scale"])
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
# A few dozen images and two simple statistics cannot rank generators; ``lensenhance
# benchmark generate`` does that with hundreds of images and the classifier's features.
