"""Make docs/_static/simulate_classes.png: example images of each substructure class.

Rows: no_sub, cdm, axion. Columns: model_i HR (noise-free), the model_i x2 LR image
that the telescope records, the HR difference to the same scene without substructure
(what the substructure does), and observed model_ii (Euclid VIS-like) and model_iii
(HST F160W-like) images. Run from the repository root::

    python docs/make_simulate_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lensenhance.simulate import SUBSTRUCTURES, LensSimulator  # noqa: E402

OUT = Path(__file__).parent / "_static" / "simulate_classes.png"
SEED = 7  # run seed of the first row; a run seed gives the same galaxies in every class


def _show(ax, image, extent, title, *, diverging=False):
    if diverging:
        limit = np.percentile(np.abs(image), 99.5) or 1.0
        ax.imshow(image, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit, extent=extent)
    else:
        # asinh stretch shows the faint arcs next to the bright lens galaxy
        scale = np.percentile(image, 99.5)
        ax.imshow(np.arcsinh(image / (0.05 * scale)), origin="lower", cmap="magma",
                  extent=extent)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _extent(ds, suffix=""):
    x, y = ds["x" + suffix].values, ds["y" + suffix].values
    half = 0.5 * abs(x[1] - x[0])
    # x is the RA offset, decreasing with the column index: east is left
    return (x[0] + half, x[-1] - half, y[0] - half, y[-1] + half)


def main():
    columns = ["model_i HR", "model_i LR x2", "HR - no_sub HR", "model_ii", "model_iii"]
    fig, axes = plt.subplots(len(SUBSTRUCTURES), len(columns), figsize=(8.5, 5.4))
    reference = LensSimulator.from_preset("model_i", substructure="no_sub")
    for row, substructure in enumerate(SUBSTRUCTURES):
        seed = SEED + row
        base = reference.simulate_pairs(1, seed=seed, progress=False)
        sim = LensSimulator.from_preset("model_i", substructure=substructure)
        ds = sim.simulate_pairs(1, seed=seed, progress=False)
        t = ds.isel(image=0)
        label = f"{substructure}\n" + r"$\theta_E$" + f"={float(t.theta_E):.2f}\""
        if substructure == "axion":
            label += f"\nL={float(t.vortex_length):.2f}\""
        elif substructure == "cdm":
            label += f"\n{int(t.n_sub)} subhalos"
        _show(axes[row, 0], ds.hr.values[0], _extent(ds, "_hr"), columns[0])
        _show(axes[row, 1], ds.lr.values[0], _extent(ds), columns[1])
        _show(axes[row, 2], ds.hr.values[0] - base.hr.values[0], _extent(ds, "_hr"),
              columns[2], diverging=True)
        for col, preset in ((3, "model_ii"), (4, "model_iii")):
            other = LensSimulator.from_preset(preset, substructure=substructure)
            image = other.simulate_snr_pairs(1, seed=seed, progress=False)
            _show(axes[row, col], image.low.values[0], _extent(image), columns[col])
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=72)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
