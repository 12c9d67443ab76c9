"""Catalog runs that put several rows through one forward pass (issue 23, item 2)."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lensenhance.enhance import Enhancer
from lensenhance.enhance.catalog import default_rows_per_pass, enhance_catalog


def _catalog(folder, n=5, size=24):
    rng = np.random.default_rng(0)
    folder.mkdir()
    paths = []
    for k in range(n):
        y, x = np.mgrid[:size, :size] - size / 2
        image = 20 * np.exp(-(x**2 + y**2) / (2 * (2 + k) ** 2)) + rng.normal(0, 0.5,
                                                                             (size, size))
        path = folder / f"c{k}.fits"
        fits.writeto(path, image.astype(np.float32), fits.Header({"BUNIT": "electron"}))
        paths.append(path.name)
    Table({"path": paths}).write(folder / "catalog.ecsv")
    return folder / "catalog.ecsv"


@pytest.fixture()
def posterior(tiny_posterior):
    _, path = tiny_posterior
    return Enhancer.open(str(path), n_samples=3, steps=2, tile_size=None,
                         cosmic_rays=False, device="cpu")


def test_batched_rows_equal_rows_run_one_by_one(posterior, tmp_path):
    catalog = _catalog(tmp_path / "in")
    assert default_rows_per_pass(posterior) == 8
    one = enhance_catalog(catalog, tmp_path / "one", enhancer=posterior, rows_per_pass=1,
                          progress=False)
    many = enhance_catalog(catalog, tmp_path / "many", enhancer=posterior, rows_per_pass=4,
                           progress=False)
    assert one["done"] == many["done"] == 5
    for k in range(5):
        a = fits.open(tmp_path / "one" / f"c{k}.fits")
        b = fits.open(tmp_path / "many" / f"c{k}.fits")
        np.testing.assert_allclose(b[0].data, a[0].data, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b["UNCERT"].data, a["UNCERT"].data, rtol=1e-4, atol=1e-6)
    # Rows are not given one another's samples: two identical inputs in different rows
    # draw different noise.
    first = fits.getdata(tmp_path / "many" / "c0.fits", "UNCERT")
    assert np.all(np.isfinite(first))


def test_a_bad_row_in_a_shared_pass_fails_alone(posterior, tmp_path):
    catalog = _catalog(tmp_path / "in", n=4)
    (tmp_path / "in" / "c2.fits").write_bytes(b"not a FITS file")
    result = enhance_catalog(catalog, tmp_path / "out", enhancer=posterior, rows_per_pass=4,
                             progress=False)
    assert result["done"] == 3 and len(result["failures"]) == 1
    (failed,) = result["failures"]
    assert "c2" in failed
    table = Table.read(tmp_path / "out" / "catalog.ecsv")
    assert list(table["status"]) == ["ok", "ok", "failed", "ok"]


def test_rows_per_pass_is_checked(posterior, tmp_path):
    catalog = _catalog(tmp_path / "in", n=1)
    with pytest.raises(ValueError, match="rows_per_pass"):
        enhance_catalog(catalog, tmp_path / "out", enhancer=posterior, rows_per_pass=0,
                        progress=False)
