"""Make docs/_static/posterior_hsc.png and posterior_sim.png: the diffusion denoisers at work.

``posterior_hsc.png``: the first image of the shipped HSC sample (a real Wide cutout, no
sigma given) through ``diffusion-denoise-hsc``, 16 samples, seed 0: input, posterior
mean, standard deviation, the Deep/UltraDeep image, residual and z-map (the posterior is
of the deep image, noise included). ``posterior_sim.png``: the first image of the simulated
benchmark set through ``diffusion-denoise``. Run from the repository root::

    python docs/make_posterior_figure.py
"""

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

import lensenhance as le
from lensenhance.benchmark.sr import BENCHMARK_SEED
from lensenhance.data import hsc_sample
from lensenhance.evaluate.plots import plot_posterior_panel
from lensenhance.training.posterior import snr_pairs

STATIC = Path(__file__).parent / "_static"


def main():
    table = hsc_sample()
    wide = fits.getdata(table["path"][0]).astype(np.float32)
    deep = fits.getdata(table["target_path"][0]).astype(np.float32)
    enh = le.Enhancer.from_pretrained("diffusion-denoise-hsc", n_samples=16)
    out = enh.enhance(CCDData(wide, unit="adu"), seed=0)
    # The posterior is of the deep image itself, so the z-map compares with it directly.
    plot_posterior_panel(STATIC / "posterior_hsc.png", observed=wide, mean=out.data,
                         std=out.uncertainty.array, truth=deep,
                         title=f"diffusion-denoise-hsc on HSC {table['name'][0]} (val)")
    data = snr_pairs(1, seed=BENCHMARK_SEED, progress=False)
    enh = le.Enhancer.from_pretrained("diffusion-denoise", n_samples=16)
    ccd = CCDData(data["low"][0], unit="electron/s",
                  uncertainty=StdDevUncertainty(data["low_sigma"][0]))
    out = enh.enhance(ccd, seed=0)
    plot_posterior_panel(STATIC / "posterior_sim.png", observed=data["low"][0],
                         mean=out.data, std=out.uncertainty.array, truth=data["clean"][0],
                         title="diffusion-denoise on a simulated Model II cutout")


if __name__ == "__main__":
    main()
