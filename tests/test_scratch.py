"""Bounded memory: working arrays on disk, whole-image passes block by block."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from scipy import ndimage

from lensenhance import Enhancer, io
from lensenhance.predict import scratch
from lensenhance.predict.scratch import (
    _shared_map,
    group_boxes,
    iter_blocks,
    release_mapped_pages,
    scratch_array,
    subgrid,
)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 px, and every working array above 1000 px on disk."""
    monkeypatch.setattr(scratch, "BLOCK", 64)
    monkeypatch.setattr(scratch, "SCRATCH_PIXELS", 1000)


def _pixel_sets(groups):
    sets = []
    for box, region in groups:
        ys, xs = np.nonzero(region)
        sets.append(frozenset(zip(ys + box[0].start, xs + box[1].start)))
    return sets


@pytest.mark.parametrize("connectivity", [1, 2])
def test_group_boxes_in_one_block_are_scipy_labels(connectivity):
    mask = np.random.default_rng(1).random((50, 70)) > 0.8
    labels, _ = ndimage.label(mask, ndimage.generate_binary_structure(2, connectivity))
    expected = [(box, labels[box] == i + 1)
                for i, box in enumerate(ndimage.find_objects(labels))]
    got = group_boxes(mask, connectivity=connectivity)
    assert _pixel_sets(got) == _pixel_sets(expected)
    assert [g[0] for g in got] == [e[0] for e in expected]


@pytest.mark.parametrize("connectivity", [1, 2])
def test_group_boxes_across_blocks_keep_every_group_whole(connectivity):
    mask = np.random.default_rng(2).random((150, 170)) > 0.75
    labels, n = ndimage.label(mask, ndimage.generate_binary_structure(2, connectivity))
    groups = _pixel_sets(group_boxes(mask, connectivity=connectivity, block=32))
    pixels = [p for group in groups for p in group]
    assert len(pixels) == len(set(pixels)) == mask.sum()  # each pixel in one group
    owner = {p: i for i, group in enumerate(groups) for p in group}
    for index in range(1, n + 1):  # no group of scipy's is split
        ys, xs = np.nonzero(labels == index)
        assert len({owner[p] for p in zip(ys, xs)}) == 1


def test_iter_blocks_cover_the_image_once_with_halos():
    seen = np.zeros((100, 130), int)
    for outer, inner, local in iter_blocks(seen.shape, halo=5, block=32):
        seen[inner] += 1
        grown = np.zeros_like(seen)
        grown[outer] = 1
        assert grown[inner].all()
        assert (np.arange(100)[outer[0]][local[0]] == np.arange(100)[inner[0]]).all()
        assert (np.arange(130)[outer[1]][local[1]] == np.arange(130)[inner[1]]).all()
    assert (seen == 1).all()


def test_scratch_array_on_disk_above_the_limit(small_blocks):
    assert type(scratch_array((20, 30), np.float32)) is np.ndarray
    big = scratch_array((200, 300), np.float32, fill=2.5)
    assert isinstance(big, np.memmap) and big.filename is None
    assert (big == 2.5).all()
    big[3, 4] = 7
    release_mapped_pages(big)
    assert big[3, 4] == 7 and big.sum() == 2.5 * big.size + 4.5


def test_a_fits_map_is_read_only_and_released_without_loss(tmp_path):
    data = np.random.default_rng(3).normal(size=(300, 200)).astype(np.float32)
    fits.writeto(tmp_path / "in.fits", data, fits.Header({"BUNIT": "electron"}))
    ccd = io.read_image(tmp_path / "in.fits", dtype=None, memmap=True)
    assert not ccd.data.flags.writeable and _shared_map(ccd.data) is not None
    release_mapped_pages(ccd.data)
    np.testing.assert_array_equal(ccd.data, data)  # read again from the file
    np.testing.assert_array_equal(subgrid(ccd.data, 3), data[::3, ::3])
    private = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=(4, 4))
    assert _shared_map(np.memmap(private.filename, dtype=np.float32, mode="c",
                                 shape=(4, 4))) is None  # its changes would be lost
    assert _shared_map(data) is None


def _survey_image(size=200, seed=4):
    """Noise, a lens-like ring, NaNs, a masked column, hot pixels and a bright star."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    ring = 30 * np.exp(-((np.hypot(y - 90, x - 100) - 25) ** 2) / 20)
    data = ring + rng.normal(0, 1, (size, size))
    data += 5e4 * np.exp(-((y - 150) ** 2 + (x - 40) ** 2) / 4)  # beyond the range
    data[rng.integers(0, size, 12), rng.integers(0, size, 12)] += 400  # hot pixels
    data[60:63, 62:67] = np.nan  # across the 64 px blocks' edges
    mask = np.zeros(data.shape, bool)
    mask[:, 127:129] = True
    sigma = np.full(data.shape, 1.0)
    return CCDData(data.astype(np.float32), unit="electron", mask=mask,
                   uncertainty=StdDevUncertainty(sigma))


def test_prepare_block_by_block_equals_the_whole_image(monkeypatch):
    enhancer = Enhancer.interpolation("bicubic")
    ccd = _survey_image()
    with pytest.warns(Warning):
        whole = enhancer._prepare(ccd, "whole")
    monkeypatch.setattr(scratch, "BLOCK", 64)
    monkeypatch.setattr(scratch, "SCRATCH_PIXELS", 1000)
    with pytest.warns(Warning):
        blocks = enhancer._prepare(ccd, "blocks")
    assert isinstance(blocks.image, np.memmap) and isinstance(blocks.bad, np.memmap)
    assert whole.n_cosmic > 0 and whole.n_bright > 0 and whole.n_interpolated > 0
    for field in ("n_cosmic", "n_bright", "n_interpolated", "n_bad"):
        assert getattr(blocks, field) == getattr(whole, field), field
    np.testing.assert_array_equal(blocks.bad, whole.bad)
    np.testing.assert_allclose(blocks.image, whole.image, atol=1e-6)
    np.testing.assert_allclose(blocks.sigma, whole.sigma, atol=1e-6)
    np.testing.assert_allclose(blocks.fill_sigma, whole.fill_sigma, atol=1e-6)
    assert [b[0] for b in blocks.boxes] == [b[0] for b in whole.boxes]


def test_enhance_file_block_by_block_equals_the_whole_image(tmp_path, monkeypatch):
    ccd = _survey_image()
    io.write_image(ccd, tmp_path / "in.fits")
    enhancer = Enhancer.interpolation("bicubic")
    with pytest.warns(Warning):
        enhancer.enhance_file(tmp_path / "in.fits", tmp_path / "whole.fits")
    monkeypatch.setattr(scratch, "BLOCK", 64)
    monkeypatch.setattr(scratch, "SCRATCH_PIXELS", 1000)
    with pytest.warns(Warning):
        enhancer.enhance_file(tmp_path / "in.fits", tmp_path / "blocks.fits")
    whole = io.read_image(tmp_path / "whole.fits")
    blocks = io.read_image(tmp_path / "blocks.fits")
    np.testing.assert_array_equal(blocks.mask, whole.mask)
    np.testing.assert_allclose(blocks.data, whole.data, rtol=1e-5, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(blocks.uncertainty.array, whole.uncertainty.array,
                               rtol=1e-5, atol=1e-4, equal_nan=True)
    assert fits.getval(tmp_path / "blocks.fits", "LENBAD") == \
        fits.getval(tmp_path / "whole.fits", "LENBAD") > 0


def test_memory_benchmark_from_the_command_line(tmp_path):
    """Peaks, times per megapixel and verdicts, the JSON written run by run."""
    import json

    from click.testing import CliRunner

    from lensenhance.cli import cli

    out = tmp_path / "memory.json"
    result = CliRunner().invoke(cli, ["benchmark", "speed", "--part", "enhance",
                                       "--memory-only", "--memory-model", "bicubic",
                                       "--memory-sides", "64,128", "--json", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert [row["image"] for row in saved["rows"]] == [[64, 64], [128, 128]]
    assert all(0.05 < row["peak_rss_gb"] < 2 and row["n_images"] == 1 for row in saved["rows"])
    ratios = saved["verdicts"]["bicubic"]["time_per_megapixel_vs_first"]
    assert ratios["64"] == 1.0 and ratios["128"] > 0
    assert "--memory-only" in saved["command"] and "bicubic" in result.output
    # --resume keeps the runs already written and runs only the new side
    again = CliRunner().invoke(cli, ["benchmark", "speed", "--part", "enhance",
                                     "--memory-only", "--memory-model", "bicubic",
                                     "--memory-sides", "64,128,96", "--resume", "--json",
                                     str(out)])
    assert again.exit_code == 0, again.output
    resumed = json.loads(out.read_text())["rows"]
    assert resumed[:2] == saved["rows"] and resumed[2]["image"] == [96, 96]


def test_memory_verdicts_against_the_targets():
    from lensenhance.benchmark.speed import ENHANCE_TARGETS, _memory_verdicts

    def row(size, peak, seconds):
        return {"model": "m", "image": [size, size], "peak_rss_gb": peak,
                "s_per_input_megapixel": seconds}

    result = {"targets": ENHANCE_TARGETS,
              "rows": [row(1024, 0.5, 10.0), row(4096, 0.60, 11.0), row(8192, 0.65, 12.0)]}
    _memory_verdicts(result)
    item = result["verdicts"]["m"]
    assert item["peak_8192_met"] and item["growth_met"]
    assert item["time_per_megapixel_vs_first"][8192] == pytest.approx(1.2)
    result["rows"][-1]["peak_rss_gb"] = 0.7  # 17 % above the 4096^2 peak
    _memory_verdicts(result)
    assert result["verdicts"]["m"]["peak_8192_met"] and not result["verdicts"]["m"]["growth_met"]
