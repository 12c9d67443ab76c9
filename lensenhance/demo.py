"""``lensenhance demo``: the package's main job end to end on an embedded default.

Simulate a few Model-I-like lenses, super-resolve the low-resolution images with the best
shipped model (and bicubic interpolation as the baseline), write every image as FITS with
its WCS, draw a comparison figure and print the metrics against the true high-resolution
images.
"""

from pathlib import Path

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from . import io
from .evaluate.metrics import batch_metrics, summarize_metrics

__all__ = ["run_demo", "best_pretrained"]


def best_pretrained(*, scale=2):
    """The shipped SR model for observed Model-I-like images with the best validation PSNR.

    See `lensenhance.pretrained.best_by_validation` for the rule; None when none is shipped.
    """
    from .pretrained import best_by_validation, sr_models_for

    return best_by_validation(sr_models_for(scale=scale))


def format_table(rows, *, title=None):
    """A plain-text table of ``{method: {metric: value}}`` rows."""
    lines = [title] if title else []
    lines.append(f"{'method':<22}{'MSE':>12}{'PSNR [dB]':>12}{'SSIM':>10}")
    for method, summary in rows.items():
        lines.append(f"{method:<22}{summary['mse']:>12.3e}{summary['psnr']:>12.2f}"
                     f"{summary['ssim']:>10.4f}")
    return "\n".join(lines)


def run_demo(out_dir="demo_out", *, n_images=4, seed=0, overwrite=False, progress=True):
    """Run the demo and return its table and the files it wrote.

    Parameters
    ----------
    out_dir : str or path-like
        Folder for ``lr_*.fits``, ``hr_*.fits``, ``<method>_*.fits`` and ``demo.png``.
    n_images : int
        Number of lenses (classes no_sub, cdm, axion in turn).
    seed : int
        Simulation seed.
    overwrite : bool
        Replace files from an earlier run; otherwise an existing file is an error.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``table`` (str), ``metrics`` (per method: mean MSE/PSNR/SSIM) and ``files``.
    """
    from .enhance.enhancer import Enhancer
    from .simulate import tan_wcs
    from .training.data import simulated_pairs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = simulated_pairs(n_images, preset="model_i", scale=2, seed=seed, progress=False)
    unit = ds.attrs["unit"]
    lr_scale = float(ds.attrs["lr_pixel_scale"])
    hr_scale = float(ds.attrs["hr_pixel_scale"])
    lr, hr, sigma = (ds[name].values for name in ("lr", "hr", "lr_sigma"))

    enhancers = {"bicubic": Enhancer.interpolation("bicubic", scale=2)}
    best = best_pretrained(scale=2)
    if best is not None:
        enhancers[best] = Enhancer.from_pretrained(best)

    files = []
    outputs = {}
    lr_wcs = tan_wcs(lr.shape[1:], lr_scale)
    hr_wcs = tan_wcs(hr.shape[1:], hr_scale)
    for i in range(len(lr)):
        lr_ccd = CCDData(lr[i], unit=unit, wcs=lr_wcs,
                         uncertainty=StdDevUncertainty(sigma[i]))
        hr_ccd = CCDData(hr[i], unit=unit, wcs=hr_wcs)
        for label, ccd in (("lr", lr_ccd), ("hr", hr_ccd)):
            path = out_dir / f"{label}_{i:03d}.fits"
            io.write_image(ccd, path, overwrite=overwrite,
                           history=f"lensenhance demo: simulated model_i, seed {seed}")
            files.append(path)
        for method, enhancer in enhancers.items():
            result = enhancer.enhance(lr_ccd)
            outputs.setdefault(method, []).append(np.asarray(result.data))
            path = out_dir / f"{method}_{i:03d}.fits"
            io.write_image(result, path, overwrite=overwrite)
            files.append(path)

    rows = {method: summarize_metrics(batch_metrics(np.stack(images), hr))
            for method, images in outputs.items()}
    table = format_table(rows, title=f"model_i x2, {len(lr)} simulated lenses, metrics "
                                     "against the noise-free HR image (data_range = HR range)")
    figure = out_dir / "demo.png"
    _plot(lr, hr, outputs, figure, overwrite=overwrite)
    files.append(figure)
    return {"table": table, "metrics": rows, "files": files}


def _plot(lr, hr, outputs, path, *, overwrite):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists")
    columns = [("LR (observed)", lr), *outputs.items(), ("HR (truth)", hr)]
    n_rows = min(len(lr), 4)
    fig, axes = plt.subplots(n_rows, len(columns), figsize=(2.2 * len(columns), 2.2 * n_rows),
                             squeeze=False)
    for row in range(n_rows):
        vmax = np.percentile(hr[row], 99.5)
        for col, (title, images) in enumerate(columns):
            # LR pixels hold 4x the flux of HR pixels: show surface brightness.
            factor = 4.0 if images is lr else 1.0
            axes[row, col].imshow(images[row] / factor, origin="lower", cmap="magma",
                                  vmin=0, vmax=vmax)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if row == 0:
                axes[row, col].set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
