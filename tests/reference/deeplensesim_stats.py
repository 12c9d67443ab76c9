"""Summary statistics of DeepLenseSim's own code, for `tests/test_deeplense_presets.py`.

Run from a checkout of https://github.com/mwt5345/DeepLenseSim (not shipped here):

    python tests/reference/deeplensesim_stats.py /path/to/DeepLenseSim [n]

pyHalo (imported by deeplense/lens.py only for its default cosmology) is replaced by a
stub with that cosmology; the renamed lenstronomy keywords (numPix, numpix) are mapped;
lenstronomy's Euclid VIS numbers are set to those of its 2021 releases (zero point 24.0,
sky 22.35, 565 s), and Model III, whose
``set_instrument('hst')`` is a no-op in the published code, gets lenstronomy's HST
WFC3 F160W numbers of that time. Prints, per model and class, the mean over ``n`` draws
of: the SIE Einstein radius, the total flux of the published image in electron/s
(Model I: image_real / exposure time; Models II/III: image_model + image_model), and the
total subhalo mass.
"""

import sys
import types

import numpy as np


def _stub_pyhalo():
    from astropy.cosmology import FlatLambdaCDM

    class CDM:
        def __init__(self, *args, **kwargs):
            # pyHalo 2021's default cosmology (pyHalo/defaults.py): it sets the multi-plane
            # ray tracing of Models II/III (z_source_convention 2.5, source at z = 1)
            self.astropy_instance = FlatLambdaCDM(H0=69.7, Om0=0.0464 + 0.235, Ob0=0.0464)

    root = types.ModuleType("pyHalo")
    preset_models = types.ModuleType("pyHalo.preset_models")
    preset_models.CDM = CDM
    root.preset_models = preset_models
    sys.modules["pyHalo"], sys.modules["pyHalo.preset_models"] = root, preset_models


EUCLID_2021 = {"read_noise": 4.2, "pixel_scale": 0.101, "ccd_gain": 3.1, "exposure_time": 565.0,
               "sky_brightness": 22.35, "magnitude_zero_point": 24.0, "num_exposures": 4,
               "seeing": 0.16, "psf_type": "GAUSSIAN"}
HST_2021 = {"read_noise": 4, "pixel_scale": 0.08, "ccd_gain": 2.5, "exposure_time": 5400.0,
            "sky_brightness": 22.3, "magnitude_zero_point": 25.96, "num_exposures": 1,
            "seeing": 0.08, "psf_type": "GAUSSIAN"}


_EXPOSURE = []


def _record_exposure():
    """simple_sim keeps its exposure time local: record the one add_poisson gets."""
    import lenstronomy.Util.image_util as image_util

    add_poisson = image_util.add_poisson

    def recording(image, exp_time):
        _EXPOSURE.append(exp_time)
        return add_poisson(image, exp_time)

    image_util.add_poisson = recording


def _old_grid_keywords():
    """lenstronomy renamed numPix/deltapix to num_pix/delta_pix after DeepLenseSim."""
    import lenstronomy.Util.util as util

    grid = util.make_grid_with_coordtransform

    def old(*args, numPix=None, deltapix=None, **kwargs):
        if numPix is not None:
            kwargs.update(num_pix=numPix, delta_pix=deltapix)
        return grid(*args, **kwargs)

    util.make_grid_with_coordtransform = old

    import lenstronomy.SimulationAPI.sim_api as sim_api

    class SimAPI(sim_api.SimAPI):
        def __init__(self, numpix, **kwargs):
            super().__init__(num_pix=numpix, **kwargs)

    sim_api.SimAPI = SimAPI


def main(path, n=200):
    sys.path.insert(0, path)
    _stub_pyhalo()
    _record_exposure()
    _old_grid_keywords()
    from deeplense.lens import DeepLens

    np.random.seed(0)
    for model in ("i", "ii", "iii"):
        for cls in ("no_sub", "cdm", "axion"):
            theta, flux, msub = [], [], []
            for _ in range(n):
                mass = 10 ** np.random.uniform(-24, -22)
                lens = DeepLens(axion_mass=mass)
                lens.make_single_halo(1e12)
                theta.append(lens.kwargs_lens_list[0]["theta_E"])
                if cls == "cdm":
                    lens.make_old_cdm()
                    msub.append(sum(lens.mass_to_radius(1.0, 0.5, 1.0) ** -2 * k["theta_E"] ** 2
                                    for k in lens.kwargs_lens_list[2:]))
                elif cls == "axion":
                    lens.make_vortex(3e10)
                    msub.append(3e10)
                else:
                    lens.make_no_sub()
                    msub.append(0.0)
                if model == "i":
                    lens.make_source_light()
                    lens.simple_sim()
                    flux.append(lens.image_real.sum() / _EXPOSURE[-1])
                else:
                    lens.kwargs_single_band = dict(EUCLID_2021 if model == "ii" else HST_2021)
                    lens.make_source_light_mag()
                    lens.simple_sim_2()
                    flux.append(lens.image_real.sum())
            print(f"model_{model} {cls}: theta_E {np.mean(theta):.4f}  "
                  f"flux {np.mean(flux):.4g} +- {np.std(flux) / np.sqrt(n):.2g}  "
                  f"m_sub {np.mean(msub):.4g} +- {np.std(msub) / np.sqrt(n):.2g}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200)
