"""Write the ``domain`` of each shipped enhancer's card (the sr, denoise and posterior models).

Run after training or publishing a model: ``python docs/make_model_domains.py``. The
domain is what the model's *input* was in training (`lensenhance.predict.domain`):

* ``pixel_scale`` (arcsec) and ``psf_fwhm`` (arcsec): the preset's
  (`lensenhance.simulate.presets.PRESETS`; an SR model's input is the preset's grid
  binned by its scale, unless it was trained with ``--lr-on-preset-grid``), or HSC's
  0.168"/px for the HSC models (their PSF is not known: the cutouts carry no seeing);
* ``image_size``: the side of the training inputs;
* ``noise_range``: the 1st and 99th percentiles of the median per-pixel sigma over the
  normalisation scale of the training inputs: from the card's ``snr_range`` where the
  training measured it, else from ``N_NOISE`` images simulated as the training command did
  (preset, scale, data seed); null for a model trained on noise-free inputs.

Only the JSON cards change (their ``sha256`` is that of the weights): `tests/test_models.py`
stays valid.
"""

import json
import re

import numpy as np

from lensenhance.predict.domain import DEFAULT_TOLERANCE
from lensenhance.predict.normalization import fit_image_normalization
from lensenhance.pretrained import WEIGHTS_DIR, list_pretrained, model_card
from lensenhance.simulate import LensSimulator
from lensenhance.simulate.presets import PRESETS

#: Images simulated per model where the card has no measured noise range.
N_NOISE = 64
#: HSC-SSP's pixel scale (Aihara et al. 2018).
HSC_PIXEL_SCALE = 0.168
HSC_SIZE = 64


def _option(command, name, default=None):
    match = re.search(rf"--{name}(?:\s+(\S+))?", command)
    if match is None:
        return default
    return True if match.group(1) is None or match.group(1).startswith("--") \
        else match.group(1)


def simulated_noise_range(preset, scale, seed, *, lr_on_preset_grid=False, n=N_NOISE):
    """Percentiles 1 and 99 of median(sigma) / normalisation scale of the LR inputs."""
    sim = LensSimulator.from_preset(preset, seed=seed)
    if lr_on_preset_grid:
        # the LR is the preset's grid: simulate the preset's image itself
        images = [sim.simulate_image(seed=seed * 1000 + i) for i in range(n)]
        pairs = [(np.asarray(c.data), c.uncertainty.array) for c in images]
    else:
        data = sim.simulate_pairs(n, scale=scale, progress=False, seed=seed)
        pairs = list(zip(data.lr.values, data.lr_sigma.values))
    noise = [float(np.median(sigma)) / fit_image_normalization(lr).scale for lr, sigma in pairs]
    return [float(np.percentile(noise, 1)), float(np.percentile(noise, 99))]


def model_domain(card):
    """The ``domain`` of one card (a dict), measured as the module docstring says."""
    command = card["command"]
    scale = int(card.get("scale", 1))
    snr = card.get("snr_range")
    noise = None if snr is None else [1.0 / snr[1], 1.0 / snr[0]]
    if card["preset"] == "hsc_wide_dud" or "--hsc" in command:
        domain = {"pixel_scale": HSC_PIXEL_SCALE, "psf_fwhm": None, "image_size": HSC_SIZE,
                  "source": "HSC-SSP Wide cutouts (../shared/data/hsc_wide_dud, train split); "
                            "pixel scale HSC's, PSF not recorded"}
    else:
        preset = PRESETS[card["preset"]]
        on_grid = bool(_option(command, "lr-on-preset-grid", False))
        binning = 1 if (on_grid or card["task"] == "denoise" or scale == 1) else scale
        size = -(-preset.num_pix // scale) * scale // binning if binning > 1 else preset.num_pix
        domain = {"pixel_scale": round(preset.pixel_scale * binning, 6),
                  "psf_fwhm": preset.psf_fwhm, "image_size": int(size),
                  "source": f"preset {preset.name}" + (f" binned x{binning}" if binning > 1
                                                       else "")}
        if _option(command, "noise-free-lr", False):
            noise = None
            domain["source"] += "; noise-free inputs"
        elif noise is None:
            seed = int(_option(command, "data-seed", 0))
            noise = simulated_noise_range(preset.name, scale, seed, lr_on_preset_grid=on_grid)
            domain["source"] += f"; noise from {N_NOISE} images, data seed {seed}"
    domain["noise_range"] = noise
    domain["tolerance"] = dict(DEFAULT_TOLERANCE)
    return domain


def main():
    for name in list_pretrained():
        card = model_card(name)
        if card["task"] not in ("sr", "denoise", "posterior"):
            continue
        path = WEIGHTS_DIR / f"{name}.json"
        stored = json.loads(path.read_text())
        stored["domain"] = model_domain(card)
        path.write_text(json.dumps(stored, indent=2) + "\n")
        print(f"{name}: {stored['domain']}")


if __name__ == "__main__":
    main()
