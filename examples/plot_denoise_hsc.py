"""
Denoise real HSC cutouts, with a calibrated uncertainty
=======================================================

The package ships eight real Hyper Suprime-Cam cutouts, each at Wide depth and of the same
galaxy at Deep/UltraDeep depth (HSC-SSP, Aihara et al. 2018; all from the ``val`` split,
never used in training). ``diffusion-denoise-hsc`` draws denoised images consistent with a
Wide cutout: their mean is the estimate, their standard deviation the per-pixel
uncertainty. No sigma is given: the model estimates the Wide image's sky noise itself and
records it in the header (``LESIGEST``).

What the uncertainty describes: the posterior of the *deep image*, its own noise included
(the Wide and Deep noises are correlated, so that noise cannot be taken out; see the
posterior page), so the intervals are checked against the deep image as it is.
"""

# %%
# Read the shipped sample and denoise the Wide cutouts
# ----------------------------------------------------
# The cutouts have no BUNIT: they are read as dimensionless, which is what they are to
# the model (its normalisation is fitted on each image). One call with the list of
# cutouts runs them in batches. 8 posterior samples of 6 sampler steps each keep this
# example to well under a minute on a 2-core CPU; the benchmark that the model card's
# figures come from (``lensenhance benchmark denoise --real``) uses 16 samples of 10
# steps, which takes about three times as long here.

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import (
    AsinhStretch,
    ImageNormalize,
    MinMaxInterval,
    PercentileInterval,
    SqrtStretch,
)

import lensenhance as le
from lensenhance.data import hsc_sample
from lensenhance.evaluate.uncertainty import interval_coverage
from lensenhance.pretrained import model_card

sample = hsc_sample()
n_samples, steps = 8, 6
enhancer = le.Enhancer.from_pretrained("diffusion-denoise-hsc", n_samples=n_samples,
                                       steps=steps, device="cpu")
print(enhancer)

wide = [le.read_image(path, unit="") for path in sample["path"]]
deep = [le.read_image(path, unit="") for path in sample["target_path"]]
outputs = enhancer.enhance(wide, seed=0)

first = outputs[0]
print(f"{len(wide)} cutouts of {wide[0].shape[0]}x{wide[0].shape[1]} pixels")
print("uncertainty:", type(first.uncertainty).__name__, "-", first.meta["UNCTYPE"])
print(f"estimated Wide sigma of the first cutout (LESIGEST): {first.meta['LESIGEST']:.4f}")

# %%
# Mean, standard deviation and z-map of two cutouts
# -------------------------------------------------
# Input, posterior mean and deep image share one asinh stretch (astropy.visualization)
# fitted to the deep image; the standard deviation has its own square-root stretch. The
# z-map ``(deep - mean) / std`` should look like noise of unit variance where the model
# is calibrated; it is drawn on a fixed ±4 scale.

fig, axes = plt.subplots(2, 5, figsize=(13, 5.6), layout="constrained")
for row, k in zip(axes, (0, 1)):
    mean, std = outputs[k].data, outputs[k].uncertainty.array
    truth = deep[k].data
    z = (truth - mean) / std
    norm = ImageNormalize(truth, interval=PercentileInterval(99.5),
                          stretch=AsinhStretch(0.05))
    panels = [("Wide input", wide[k].data, dict(norm=norm, cmap="magma")),
              ("posterior mean", mean, dict(norm=norm, cmap="magma")),
              ("posterior std", std, dict(norm=ImageNormalize(
                  std, interval=MinMaxInterval(), stretch=SqrtStretch()), cmap="viridis")),
              ("Deep/UltraDeep", truth, dict(norm=norm, cmap="magma")),
              ("(deep - mean) / std", z, dict(vmin=-4, vmax=4, cmap="RdBu_r"))]
    for ax, (title, image, style) in zip(row, panels):
        im = ax.imshow(image, origin="lower", **style)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    row[0].text(0.02, 0.98, sample["name"][k], transform=row[0].transAxes, va="top",
                color="white", fontsize=8)
    fig.colorbar(im, ax=row[-1], shrink=0.8)
plt.show()

# %%
# How often the intervals hold the deep image
# -------------------------------------------
# Coverage of the 68 % and 95 % Gaussian intervals (``mean ± 1 std``, ``± 1.96 std``)
# where there is light (pixels above each deep image's median), over the shipped
# cutouts. The standard deviation of 8 samples is itself noisy (its relative error is
# about ``1 / sqrt(2 n)``, 25 %), the calibration factor was fitted with 16 samples of
# 10 steps, neighbouring pixels are correlated, and eight cutouts are few beside the 132
# of the ``val`` split the model card's figures come from: expect these numbers to
# scatter around the card's.

truth = np.stack([d.data for d in deep])
mean = np.stack([o.data for o in outputs])
std = np.stack([o.uncertainty.array for o in outputs])
light = truth > np.median(truth.reshape(len(truth), -1), axis=1)[:, None, None]
coverage = interval_coverage(truth, mean, std, levels=(0.68, 0.95), mask=light)
print(f"68 % coverage {coverage[0.68]:.3f}, 95 % coverage {coverage[0.95]:.3f}: "
      f"{int(light.sum())} pixels of n = {len(truth)} images "
      f"({n_samples} samples, {steps} steps)")
card = model_card("diffusion-denoise-hsc")["metrics"]
print(f"model card: 68 % {card['calibration_light']['coverage_68']:.3f}, 95 % "
      f"{card['calibration_light']['coverage_95']:.3f} "
      f"({card['calibration_light']['n_pixels']} pixels of n = {card['n']} images, "
      f"{card['n_samples']} samples, {card['steps']} steps)")
