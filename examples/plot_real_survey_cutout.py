"""
A bright star, cosmic rays and a bad column on real HSC data: what is flagged and why
=====================================================================================

Survey images are not the clean cutouts models are trained on: stars thousands of times
brighter than the lens, cosmic rays, bad columns. This example shows what the
`~lensenhance.Enhancer` does with each of them, on the real Hyper Suprime-Cam Wide cutouts
shipped with the package (HSC-SSP, Aihara et al. 2018; see
``lensenhance/data/hsc_sample/README.md``), denoised by ``diffusion-denoise-hsc`` with its
posterior standard deviation.

What is real and what is injected:

* **real**: the eight 64x64 Wide cutouts (0.168"/px), their galaxies, the compact
  neighbour beside the galaxy of ``n56_384_22098``, their sky noise;
* **injected** (none of the shipped cutouts holds a bright star or an artefact, and the
  example is to show every flag): one star a thousand times brighter than that galaxy's
  peak, a few cosmic-ray hits (single hot pixels and short streaks) and a short bad
  column of NaN.

Every number below is printed by the code.
"""

# %%
# A field of real cutouts
# -----------------------
# The normalisation scale of an image is its 99.5th percentile (:doc:`/concepts`). The
# eight Wide cutouts are laid side by side into one 128x256 field, each with its own sky
# level (a sigma-clipped median) subtracted so that the field has one sky (the last
# section takes a cutout alone). They have no WCS and no unit; they are dimensionless to
# the model.

import warnings

import matplotlib.pyplot as plt
import numpy as np
from astropy.convolution import discretize_model
from astropy.modeling.models import Gaussian2D, Moffat2D
from astropy.nddata import CCDData
from astropy.stats import gaussian_fwhm_to_sigma, sigma_clipped_stats
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval, SqrtStretch
from matplotlib.colors import ListedColormap

import lensenhance as le
from lensenhance.data import hsc_sample
from lensenhance.predict.normalization import fit_image_normalization

sample = hsc_sample()
names = list(sample["name"])
cutouts = []
for path in sample["path"]:
    data = le.read_image(path, unit="").data.astype(np.float64)
    cutouts.append(data - sigma_clipped_stats(data)[1])
field = np.block([cutouts[:4], cutouts[4:]])
n = cutouts[0].shape[0]
home = names.index("n56_384_22098")  # the cutout that gets the star and the artefacts
y0, x0 = (home // 4) * n, (home % 4) * n  # its corner in the field
galaxy_peak = cutouts[home].max()
print(f"field {field.shape[0]}x{field.shape[1]} px from {len(cutouts)} cutouts; "
      f"{names[home]}'s galaxy peaks at {galaxy_peak:.1f}")

# %%
# Inject a star, cosmic rays and a bad column
# -------------------------------------------
# The star is a point source seen through a Gaussian PSF of FWHM 0.65", HSC Wide's typical
# seeing, integrated over the 0.168" pixels, placed beside the galaxy. A real PSF
# also has wings, which a Gaussian lacks; the last section shows what they change. Stars
# like this one saturate in real exposures; it is not clipped, so that its flux is known
# exactly. The cosmic rays are single hot pixels and two- to four-pixel streaks, on the
# sky and on the galaxy's outskirts; the bad column is eight NaN pixels.

pixel_scale, seeing, ratio = 0.168, 0.65, 1000.0
fwhm = seeing / pixel_scale
star_yx = (y0 + 50.3, x0 + 14.6)


def point_source(profile):
    """A point source of peak ``ratio`` times the galaxy's, integrated over the pixels."""
    values = discretize_model(profile, (0, field.shape[1]), (0, field.shape[0]),
                              mode="oversample", factor=10)
    return values * ratio * galaxy_peak / values.max()


star = point_source(Gaussian2D(1.0, star_yx[1], star_yx[0], fwhm * gaussian_fwhm_to_sigma,
                               fwhm * gaussian_fwhm_to_sigma))
rays = np.zeros(field.shape)
hits = {  # (row, column) in the cutout: value
    (10, 40): 6.0, (52, 30): 4.0,  # hot pixels on the sky
    (20, 8): 5.0, (21, 9): 5.0, (22, 10): 4.0, (23, 11): 3.0,  # a streak on the sky
    (24, 40): 8.0, (25, 40): 7.0,  # a short one on the galaxy's outskirts
}
for (y, x), value in hits.items():
    rays[y0 + y, x0 + x] = value
nan_column = (slice(y0 + 4, y0 + 12), x0 + 56)
image = field + star + rays
image[nan_column] = np.nan
galaxy_yx = np.add(np.unravel_index(cutouts[home].argmax(), (n, n)), (y0, x0))
print(f"star: FWHM {fwhm:.2f} px, peak {star.max():.4g} ({star.max() / galaxy_peak:.0f} x "
      f"the galaxy's), flux {star.sum():.4g}, {np.hypot(*(galaxy_yx - star_yx)):.1f} px from "
      f"the galaxy's peak; {len(hits)} cosmic-ray pixels; "
      f"{int(np.isnan(image).sum())} NaN pixels")

# %%
# Denoise, catching the warnings
# ------------------------------
# 8 posterior samples of 6 sampler steps keep this example fast on one CPU core (the model
# card's figures use 16 samples of 10 steps). The cutouts say nothing about their PSF, nor
# does the model's card, so it is given to the enhancer: the cosmic-ray test
# (L.A.Cosmic, then "sharper than this PSF allows") needs it. No sigma is given: the
# model estimates the sky noise (``LESIGEST``).

enhancer = le.Enhancer.from_pretrained("diffusion-denoise-hsc", n_samples=8, steps=6,
                                       device="cpu", psf_fwhm=seeing)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = enhancer.enhance(CCDData(image.astype(np.float32), unit=""), seed=0)
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
for key in ("LESIGEST", "LENORMOF", "LENORMSC", "LEOUTLR", "LECRAY", "LENBAD", "LENCR",
            "LENRANGE", "LENINTP", *[k for k in out.meta if k.startswith("LEWARN")]):
    print(f"{key:8s} = {out.meta[key]!r}")

# %%
# Why each pixel is flagged
# -------------------------
# The output mask is the union of three kinds of pixel, told apart by the output itself:
#
# * **NaN in the input** and **cosmic rays**: the bad pixels (``LENBAD``), filled from
#   their neighbourhood for the network and NaN in the output; a cosmic ray is a bad pixel
#   that was finite in the input (``LENCR``);
# * **beyond the model's range**: ``|(x - LENORMOF) / LENORMSC| > LEOUTLR`` (``LENRANGE``);
#   with a margin around them they are **interpolated** (``LENINTP``): the output is a
#   flux-conserving interpolation of the input there, finite and masked.

z = (image - out.meta["LENORMOF"]) / out.meta["LENORMSC"]
reasons = {
    "NaN in the input": ~np.isfinite(image),
    "cosmic ray": np.isfinite(image) & np.isnan(out.data),
    "beyond the range": np.isfinite(image) & ~np.isnan(out.data)
    & (np.abs(np.nan_to_num(z)) > out.meta["LEOUTLR"]),
}
reasons["interpolated (margin)"] = (out.mask & np.isfinite(out.data)
                                    & ~reasons["beyond the range"])
for reason, pixels in reasons.items():
    print(f"{reason:22s} {int(pixels.sum()):4d} px")
print(f"header: LENBAD {out.meta['LENBAD']} = NaN + cosmic rays "
      f"{int(reasons['NaN in the input'].sum() + reasons['cosmic ray'].sum())}, LENCR "
      f"{out.meta['LENCR']}, LENRANGE {out.meta['LENRANGE']}, LENINTP {out.meta['LENINTP']} = "
      f"{int(reasons['beyond the range'].sum() + reasons['interpolated (margin)'].sum())}; "
      f"masked in all {int(out.mask.sum())}")
injected = rays > 0
found = reasons["cosmic ray"]
outside = np.ones(field.shape, bool)
outside[y0:y0 + n, x0:x0 + n] = False
print(f"cosmic rays: {int((found & injected).sum())} of the {int(injected.sum())} injected "
      f"pixels found, {int((found & ~injected).sum())} other pixels flagged "
      f"({int((found & outside).sum())} of them in the seven untouched cutouts)")

# %%
# The star's flux, before and after
# ---------------------------------
# Aperture sums around the star, in the input and in the posterior mean. Denoising does
# not change the pixel size, so the flux-conserving interpolation of the input is the
# input itself; the largest difference between the two over the interpolated pixels says
# so. The widest aperture also holds pixels the network predicted, around the star.

rows, cols = np.indices(field.shape)
distance = np.hypot(rows - star_yx[0], cols - star_yx[1])
interpolated = reasons["beyond the range"] | reasons["interpolated (margin)"]
print(f"largest |output - input| over the interpolated pixels: "
      f"{np.abs(out.data - image)[interpolated].max():.3g}")
print(f"injected star flux {star.sum():.6g}")
for radius in (3.0, 6.0, 10.0):
    aperture = distance < radius
    before, after = image[aperture].sum(), out.data[aperture].sum()
    print(f"r < {radius:4.1f} px ({int((aperture & interpolated).sum())} of "
          f"{int(aperture.sum())} px interpolated): input {before:.6g}, output {after:.6g}, "
          f"ratio {after / before:.5f}")

# %%
# What the network does not see
# -----------------------------
# A star's pixels beyond the range have wings and a rim far brighter than the lenses the
# network was trained on (they sit near 1 once normalised): shown those, the network
# would change its output for many pixels around. So it sees none of the star: its
# whole footprint, down to three sky sigma and deblended from the galaxy beside it
# (a watershed, `~lensenhance.predict.pixels.source_footprint`), is filled from its
# surroundings for the network, and interpolated, with a 2-pixel margin, in the output.
# The largest normalised value in the margin is printed, and the largest outside the
# flags near the star. Does anything still reach the unflagged output? The same field is
# denoised without the star (the random numbers are keyed to the seed and the pixel, so
# both runs draw the same noise): away from the flags, ``mean with the star - star - mean
# without`` should be zero within the posterior std, whose median over the field is
# printed too.

near = ~out.mask & (distance < 14)
print(f"largest |(x - LENORMOF) / LENORMSC| in the margin "
      f"{np.abs(z[reasons['interpolated (margin)']]).max():.3g}, outside the flags within "
      f"14 px of the star {np.abs(z[near]).max():.3g}; the interpolated disc reaches "
      f"{distance[interpolated].max():.1f} px from the star")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    without = enhancer.enhance(CCDData((image - star).astype(np.float32), unit=""), seed=0)
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
change = out.data - star - without.data
unflagged = ~out.mask & np.isfinite(change)
print(f"median posterior std {np.nanmedian(out.uncertainty.array):.3g}; "
      f"LENORMSC without the star {without.meta['LENORMSC']:.4g}")
for r0, r1 in ((0, 12), (12, 16), (16, 24), (24, 1000)):
    ring = unflagged & (distance >= r0) & (distance < r1)
    if not ring.any():
        print(f"{r0:3d} <= r < {r1:4d} px: every pixel flagged")
        continue
    pull = np.abs(change[ring]) / out.uncertainty.array[ring]
    print(f"{r0:3d} <= r < {r1:4d} px: {int(ring.sum()):5d} unflagged px, change "
          f"{change[ring].sum():+9.1f} in all, {int((pull > 3).sum()):4d} beyond 3 std "
          f"(largest {pull.max():.3g} std)")

# %%
# The figure
# ----------
# The whole field with the flags, then the cutout with the star: input, posterior mean
# and standard deviation, and the flags (white: NaN). Input and mean share one asinh
# stretch fitted to the field without the star; the standard deviation has its own
# square-root stretch.

colors = ["black", "tab:red", "tab:cyan", "gold", "tab:orange"]
labels = ["not flagged", *reasons]
codes = np.zeros(field.shape, int)
for code, pixels in enumerate(reasons.values(), start=1):
    codes[pixels] = code
cmap = ListedColormap(colors)
norm = ImageNormalize(field, interval=PercentileInterval(99.5), stretch=AsinhStretch(0.05))

fig = plt.figure(figsize=(12, 6.6), layout="constrained")
top, bottom = fig.subfigures(2, 1, height_ratios=[1, 0.95])
overview = top.subplots(1, 2)
overview[0].imshow(image, origin="lower", norm=norm, cmap="magma")
overview[0].set_title("input field (eight real cutouts + injected star and artefacts)",
                      fontsize=9)
overview[1].imshow(codes, origin="lower", cmap=cmap, vmin=-0.5, vmax=len(colors) - 0.5,
                   interpolation="nearest")
overview[1].set_title("flags", fontsize=9)
for ax in overview:
    ax.set_axis_off()
    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), n, n, fill=False, ec="white", lw=0.8))
box = (slice(y0, y0 + n), slice(x0, x0 + n))
mean, std = out.data[box], out.uncertainty.array[box]
panels = bottom.subplots(1, 4)
for ax, (title, values, style) in zip(panels, [
        ("input", image[box], dict(norm=norm, cmap="magma")),
        ("posterior mean", mean, dict(norm=norm, cmap="magma")),
        ("posterior std", std, dict(norm=ImageNormalize(
            std, interval=PercentileInterval(99.0), stretch=SqrtStretch()), cmap="viridis")),
        ("flags", codes[box], dict(cmap=cmap, vmin=-0.5, vmax=len(colors) - 0.5,
                                   interpolation="nearest"))]):
    ax.imshow(values, origin="lower", **style)
    ax.set_title(f"{names[home]}: {title}", fontsize=9)
    ax.set_axis_off()
bottom.colorbar(panels[2].images[0], ax=panels[2], shrink=0.7)
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors]
overview[1].legend(handles, labels, loc="upper right", fontsize=8)
plt.show()

# %%
# When the star could set the normalisation
# -----------------------------------------
# In the field the star covers far less than 0.5 % of the pixels, so the scale stays the
# galaxies'. In the 64x64 cutout alone it covers more, and a star with the wings of real
# seeing (a Moffat profile, beta = 3, of the same FWHM) more still: their 99.5th
# percentile is the star's, and the galaxy would reach the network far fainter than any
# training image. With the PSF known (here ``psf_fwhm``; else the header's seeing or the
# model's card), the normalisation leaves out a point source whose peak is beyond the
# model's range in the scale of the rest of the image, when that rest holds a source of
# its own; a compact galaxy alone on the sky still sets the scale, as in training
# (:func:`~lensenhance.predict.normalization.fit_image_normalization`). The scales below
# are each image's with and without the star. (The flags and the normalisation do not
# depend on the sampler: two samples of two steps are enough to read them.)

quick = le.Enhancer.from_pretrained("diffusion-denoise-hsc", n_samples=2, steps=2,
                                    device="cpu", psf_fwhm=seeing)
beta = 3.0
winged = point_source(Moffat2D(1.0, star_yx[1], star_yx[0],
                               gamma=fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1)), alpha=beta))
for label, case, background in (
        ("Gaussian star, cutout alone", image[box], (image - star)[box]),
        ("Moffat star, field", field + winged + rays, field + rays)):
    bright = case > galaxy_peak
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = quick.enhance(CCDData(case.astype(np.float32), unit=""), seed=0)
    scale = fit_image_normalization(np.nan_to_num(background)).scale
    print(f"{label}: {int(bright.sum())} of {case.size} px ({100 * bright.mean():.1f} %) "
          f"above the galaxy's peak; LENORMSC {result.meta['LENORMSC']:.4g} (without the "
          f"star {scale:.4g}), LENRANGE {result.meta['LENRANGE']}, LENINTP "
          f"{result.meta['LENINTP']}, LENCR {result.meta['LENCR']}")
    for warning in caught:
        print(f"    {warning.category.__name__}: {warning.message}")
