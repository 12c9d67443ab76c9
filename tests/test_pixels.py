"""Bad-pixel filling and flux splitting, on their own (the Enhancer's use is in test_enhance)."""

import numpy as np
import pytest
from astropy import units as u

from lensenhance.predict.pixels import fill_bad_pixels, flux_split_factor


def _bad_image(shape=(40, 40)):
    y, x = np.mgrid[: shape[0], : shape[1]]
    image = (0.05 * x + 0.02 * y).astype(np.float32)  # a smooth ramp fills exactly enough
    bad = np.zeros(shape, bool)
    bad[10, 10] = True  # a hot pixel
    bad[20:26, 5:12] = True  # a satellite trail's worth of pixels
    return image, bad


def test_good_pixels_are_untouched_and_bad_ones_filled_from_neighbours():
    image, bad = _bad_image()
    truth = image.copy()
    image[bad] = np.nan
    fill_bad_pixels(image, bad)
    assert np.isfinite(image).all()
    np.testing.assert_array_equal(image[~bad], truth[~bad])
    # A Gaussian-weighted mean of a ramp: close to the ramp, and inside its local range.
    assert abs(image[10, 10] - truth[10, 10]) < 0.02
    assert np.abs(image[bad] - truth[bad]).max() < 0.3


def test_a_region_with_no_valid_neighbour_gets_the_background():
    image = np.full((8, 8), np.nan, np.float32)
    fill_bad_pixels(image, np.ones((8, 8), bool))
    np.testing.assert_array_equal(image, 0.0)


def test_nothing_bad_changes_nothing():
    image, _ = _bad_image()
    before = image.copy()
    fill_bad_pixels(image, np.zeros(image.shape, bool))
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("unit,scale,factor", [
    (None, 2, 0.25), (u.electron / u.s, 4, 1 / 16), (u.Jy, 2, 0.25),
    (u.MJy / u.sr, 2, 1.0), (u.Jy / u.beam, 2, 1.0), (u.erg / u.s / u.cm**2 / u.arcsec**2, 2, 1.0),
    (u.K, 2, 1.0), (u.solLum / u.pc**2, 2, 1.0), (u.erg / u.s / u.cm**2, 2, 0.25)])
def test_flux_split_factor(unit, scale, factor):
    assert flux_split_factor(unit, scale) == pytest.approx(factor)


def test_flux_split_factor_refuses_magnitudes_and_names_the_image():
    with pytest.raises(ValueError, match="cutout.fits.*magnitudes"):
        flux_split_factor(u.mag, 2, name="cutout.fits")
    with pytest.raises(ValueError, match="magnitudes"):
        flux_split_factor(u.ABmag, 2)


@pytest.mark.parametrize("bunit", ["ABmag", "STmag", "MAG", "magnitude", "mags", "dex",
                                   "ABmag/arcsec2", "mag(AB)", "mag/arcsec2"])
def test_magnitude_names_astropy_does_not_parse_are_refused(bunit):
    unit = u.Unit(bunit, parse_strict="silent")
    with pytest.raises(ValueError, match="logarithmic"):
        flux_split_factor(unit, 2, name="m.fits")


def test_an_unknown_unit_warns_only_when_pixels_are_split():
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    unknown = u.Unit("furlongs per fortnight", parse_strict="silent")
    with pytest.warns(AstropyUserWarning, match="odd.fits.*flux per pixel"):
        assert flux_split_factor(unknown, 2, name="odd.fits") == 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert flux_split_factor(unknown, 1) == 1.0


def test_astroscrappy_saturation_mask_is_made_as_astroscrappy_makes_it():
    """astroscrappy 1.3 leaks a byte per pixel per call; ours gives its result without."""
    import astroscrappy.astroscrappy as module
    from astroscrappy.utils.image_utils import dilate5

    from lensenhance.predict.pixels import _astroscrappy

    rng = np.random.default_rng(7)
    data = rng.normal(0, 1, (96, 128)).astype(np.float32)
    data[40:44, 60:64] = 500.0  # a saturated core
    stars = rng.random(data.shape) > 0.98
    np.testing.assert_array_equal(dilate5(stars, 2), dilate5(dilate5(stars, 1), 1))
    _astroscrappy()
    mask = (rng.random(data.shape) > 0.99).astype(np.uint8)
    ours = mask.copy()
    module.update_mask(data, ours, 400.0, True)
    assert ours[40:44, 60:64].all() and ours.sum() > mask.sum()


@pytest.mark.slow
def test_cosmic_rays_of_many_blocks_do_not_leak():
    from lensenhance.predict.pixels import detect_cosmic_rays
    from lensenhance.predict.scratch import release_heap

    rng = np.random.default_rng(8)

    def rss_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status
                        if line.startswith("VmRSS")) / 1e3

    image = rng.normal(0, 1, (1024, 1024)).astype(np.float32)
    detect_cosmic_rays(image, 1.0)
    release_heap()
    before = rss_mb()
    for _ in range(20):  # the leak: 20 x 1 MB
        detect_cosmic_rays(image, 1.0)
    release_heap()
    assert rss_mb() - before < 8
