"""
Super-resolve a large mosaic in tiles, with dask
================================================

A survey image does not go through a network in one pass: the Enhancer cuts it into
tiles, each grown by a *halo* of at least the network's receptive field, and puts the
predictions back together. For a network without global operations the tiled result
equals the whole-image one to float rounding; ``parallel=2`` runs the tiles on two dask
threads. Here a 750x750 mosaic of simulated Model-I-like lenses is enhanced both ways, the
results are compared, and the tiles are drawn over the image.
"""

# %%
# A mosaic of simulated lenses
# ----------------------------
# 100 observed lenses (75x75 pixels of 0.1" each, with their noise) side by side: a
# 750x750 image, super-resolved to 1500x1500.

import time

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
from matplotlib.patches import Rectangle

import lensenhance as le
from lensenhance.predict.tiling import plan_tiles

sim = le.LensSimulator.from_preset("model_i", substructure="all", seed=3)
cutouts = sim.simulate_pairs(100, scale=2, progress=False)["lr"].values.astype(np.float32)
mosaic = np.block([[cutouts[10 * i + j] for j in range(10)] for i in range(10)])
print("mosaic:", mosaic.shape, mosaic.dtype)

# %%
# Whole image against tiles on two dask threads
# ---------------------------------------------
# ``fsrcnn-x2``, the fastest shipped model, keeps this quick on a CPU; every shipped SR
# model works the same way. ``tile_size`` counts the input pixels given to the network,
# halo included; ``overlap`` is the band where neighbouring tiles are blended (0, the
# default for networks like this one, butts the tiles together). A second tiled run
# blends over a 16-pixel band: for an exactly tileable network both equal the whole
# image.

whole = le.Enhancer.from_pretrained("fsrcnn-x2", tile_size=None, device="cpu")
tiled = le.Enhancer.from_pretrained("fsrcnn-x2", tile_size=256, overlap=0, device="cpu")
blended = le.Enhancer.from_pretrained("fsrcnn-x2", tile_size=256, overlap=16, device="cpu")
print(tiled)

results, seconds = {}, {}
for label, enhancer, parallel in (("whole", whole, False), ("tiled", tiled, 2),
                                  ("tiled, blended", blended, 2)):
    start = time.perf_counter()
    results[label] = enhancer.enhance(mosaic, parallel=parallel)
    seconds[label] = time.perf_counter() - start

reference = results["whole"]
peak = np.abs(reference).max()
for label, result in results.items():
    line = f"{label:<15} {result.shape}, {seconds[label]:.2f} s"
    if label != "whole":
        largest = np.abs(result - reference).max()
        line += (f", largest |difference| from whole {largest:.2e} "
                 f"({largest / peak:.1e} of the peak)")
    print(line)
print("(1 image, 1 run each, on the machine that built this page: times are indicative)")

# %%
# Where the tiles are
# -------------------
# `lensenhance.predict.tiling.plan_tiles` gives the plan the Enhancer runs: each tile's used part
# (solid) and what the network reads around it (dashed: the halo, here the network's
# receptive field).

plan = plan_tiles(mosaic.shape, tile_size=tiled.tile_size, halo=tiled.halo,
                  overlap=tiled.overlap)
result = results["tiled"]
norm = ImageNormalize(result, interval=PercentileInterval(99.5), stretch=AsinhStretch(0.05))
fig, ax = plt.subplots(figsize=(7, 7), layout="constrained")
ax.imshow(result, origin="lower", cmap="gray", norm=norm)
s = tiled.scale
for tile, colour in zip(plan, plt.cm.tab10.colors * 10):
    (uy0, uy1), (ux0, ux1) = tile.used
    (ry0, ry1), (rx0, rx1) = tile.read
    ax.add_patch(Rectangle((ux0 * s, uy0 * s), (ux1 - ux0) * s, (uy1 - uy0) * s,
                           fill=False, color=colour, lw=1.5))
    ax.add_patch(Rectangle((rx0 * s, ry0 * s), (rx1 - rx0) * s, (ry1 - ry0) * s,
                           fill=False, color=colour, lw=0.8, ls="--"))
ax.set_title(f"{len(plan)} tiles of {tiled.tile_size} input px, halo {tiled.halo} px "
             f"(drawn on the x{s} output)")
ax.set_axis_off()
plt.show()

# %%
# Across a seam
# -------------
# A close-up where four tiles meet: the tiled and the whole-image results, and their
# difference, which is float rounding.

(_, y_seam), (_, x_seam) = plan[0].used
window = np.s_[(y_seam - 40) * s:(y_seam + 40) * s, (x_seam - 40) * s:(x_seam + 40) * s]
difference = results["tiled"] - reference
fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
for ax, (title, image) in zip(axes[:2], (("tiled", result), ("whole", reference))):
    ax.imshow(image[window], origin="lower", cmap="gray", norm=norm)
    ax.axhline(40 * s, color="C1", lw=0.8, ls=":")
    ax.axvline(40 * s, color="C1", lw=0.8, ls=":")
    ax.set_title(f"{title} (seam dotted)")
    ax.set_axis_off()
limit = np.abs(difference[window]).max() or 1.0
im = axes[2].imshow(difference[window], origin="lower", cmap="RdBu_r", vmin=-limit,
                    vmax=limit)
axes[2].set_title("tiled - whole")
axes[2].set_axis_off()
fig.colorbar(im, ax=axes[2], shrink=0.8, label="electron / s")
plt.show()
