"""Tests of lensenhance.io.deeplense: reading DeepLense .npy folders, converting to FITS."""

import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

from lensenhance import io
from lensenhance.cli import cli
from lensenhance.io.deeplense import read_deeplense

N = 16  # image side


def image(seed, shape=(N, N)):
    """A distinct float64 test image (values differ per seed)."""
    return np.random.default_rng(seed).normal(seed, 1.0, size=shape)


def axion_file(path, img, mass):
    """Save DeepLense's axion layout: a 2-element object array [image, mass]."""
    array = np.empty(2, dtype=object)  # np.array([img, mass]) would try to broadcast
    array[0], array[1] = img, mass
    np.save(path, array)


@pytest.fixture
def tree(tmp_path):
    """A class-layout folder: 2 images per class, names out of creation order.

    Returns the folder and, in read order, ``(class, file name, image, mass)``.
    """
    root = tmp_path / "deeplense"
    for name in ("no_sub", "cdm", "axion"):
        (root / name).mkdir(parents=True)
    # "img_10" sorts before "img_2": file order is by name, not by number or creation.
    np.save(root / "no_sub" / "img_2.npy", image(1))
    np.save(root / "no_sub" / "img_10.npy", image(2)[np.newaxis])  # (1, N, N)
    np.save(root / "cdm" / "b.npy", image(4).astype(np.float32))
    np.save(root / "cdm" / "a.npy", image(3))
    axion_file(root / "axion" / "axion_sim_1.npy", image(5), 3.5e-23)
    np.save(root / "axion" / "axion_sim_2.npy", image(6))  # no mass: NaN
    expected = [("no_sub", "img_10.npy", image(2), np.nan),
                ("no_sub", "img_2.npy", image(1), np.nan),
                ("cdm", "a.npy", image(3), np.nan),
                ("cdm", "b.npy", image(4), np.nan),
                ("axion", "axion_sim_1.npy", image(5), 3.5e-23),
                ("axion", "axion_sim_2.npy", image(6), np.nan)]
    return root, expected


@pytest.fixture
def sr_tree(tmp_path):
    """A super-resolution folder: HR (2N, 2N) and LR (1, N, N) files paired by name."""
    root = tmp_path / "sr"
    (root / "HR").mkdir(parents=True)
    (root / "LR").mkdir()
    for k, name in enumerate(("s2.npy", "s1.npy")):
        np.save(root / "HR" / name, image(10 + k, (1, 2 * N, 2 * N)))
        np.save(root / "LR" / name, image(20 + k, (1, N, N)))
    return root


# --------------------------------------------------------------------------------------
# read_deeplense: the class layout
# --------------------------------------------------------------------------------------


def test_class_layout_values_order_and_coordinates(tree):
    root, expected = tree
    ds = read_deeplense(root)
    assert ds["images"].dims == ("image", "y", "x")
    assert ds["images"].shape == (6, N, N)
    assert ds["images"].dtype == np.float32
    for i, (_, _, img, _) in enumerate(expected):
        np.testing.assert_array_equal(ds["images"].values[i], img.astype(np.float32))
    assert ds["class"].values.tolist() == [e[0] for e in expected]
    assert ds["label"].values.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds["file"].values.tolist() == [str(root / c / f) for c, f, _, _ in expected]
    np.testing.assert_array_equal(ds["axion_mass"].values, [e[3] for e in expected])
    assert ds["axion_mass"].attrs["units"] == "eV"
    assert ds.attrs["layout"] == "classes"


def test_classes_restricts_and_keeps_label_order(tree):
    root, expected = tree
    # Given in reverse, and by a folder alias: still no_sub first, labels unchanged.
    ds = read_deeplense(root, classes=["vort", "no_sub"])
    assert ds["class"].values.tolist() == ["no_sub", "no_sub", "axion", "axion"]
    assert ds["label"].values.tolist() == [0, 0, 2, 2]
    np.testing.assert_array_equal(ds["images"].values[2], image(5).astype(np.float32))
    only = read_deeplense(root, classes="cdm")
    assert only["file"].values.tolist() == [str(root / "cdm" / "a.npy"),
                                            str(root / "cdm" / "b.npy")]


def test_alias_folder_names(tmp_path):
    for folder in ("no_substructure", "subhalo", "vort"):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "x.npy", image(len(folder)))
    ds = read_deeplense(tmp_path)
    assert ds["class"].values.tolist() == ["no_sub", "cdm", "axion"]
    assert ds["label"].values.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(ds["images"].values[1], image(len("subhalo")).astype("f4"))


def test_object_array_saved_as_deeplense_does(tmp_path):
    # DeepLenseSim writes np.array([image, mass]) with an implicit object dtype.
    (tmp_path / "axion").mkdir()
    np.save(tmp_path / "axion" / "a.npy",
            np.array([image(7, (1, N, N)), np.float64(1e-22)], dtype=object))
    ds = read_deeplense(tmp_path)
    assert ds["axion_mass"].values.tolist() == [1e-22]
    np.testing.assert_array_equal(ds["images"].values[0], image(7).astype(np.float32))


def test_partly_nan_image_is_kept(tmp_path):
    (tmp_path / "cdm").mkdir()
    img = image(8)
    img[0, :3] = np.nan
    np.save(tmp_path / "cdm" / "a.npy", img)
    values = read_deeplense(tmp_path)["images"].values[0]
    assert np.isnan(values).sum() == 3
    np.testing.assert_array_equal(values[1:], img[1:].astype(np.float32))


# --------------------------------------------------------------------------------------
# read_deeplense: the super-resolution layout
# --------------------------------------------------------------------------------------


def test_sr_layout_pairs_by_name(sr_tree):
    ds = read_deeplense(sr_tree)
    assert ds.attrs["layout"] == "super_resolution"
    assert ds["hr"].dims == ("image", "y_hr", "x_hr") and ds["hr"].shape == (2, 2 * N, 2 * N)
    assert ds["lr"].dims == ("image", "y", "x") and ds["lr"].shape == (2, N, N)
    assert ds["name"].values.tolist() == ["s1.npy", "s2.npy"]
    # s1 was written second (k = 1): its HR and LR stay together.
    np.testing.assert_array_equal(ds["hr"].values[0], image(11, (2 * N, 2 * N)).astype("f4"))
    np.testing.assert_array_equal(ds["lr"].values[0], image(21, (N, N)).astype("f4"))
    assert ds["hr_file"].values.tolist()[1] == str(sr_tree / "HR" / "s2.npy")
    assert ds["lr_file"].values.tolist()[1] == str(sr_tree / "LR" / "s2.npy")


def test_sr_layout_refuses_classes(sr_tree):
    with pytest.raises(ValueError, match="classes= applies to class folders"):
        read_deeplense(sr_tree, classes="cdm")


def test_sr_hr_without_lr_partner(sr_tree):
    np.save(sr_tree / "HR" / "s3.npy", image(3, (2 * N, 2 * N)))
    with pytest.raises(ValueError, match=r"HR/s3\.npy: no LR partner"):
        read_deeplense(sr_tree)


def test_sr_lr_without_hr_partner(sr_tree):
    np.save(sr_tree / "LR" / "s0.npy", image(3))
    with pytest.raises(ValueError, match=r"LR/s0\.npy: no HR partner"):
        read_deeplense(sr_tree)


def test_sr_needs_both_folders(tmp_path):
    (tmp_path / "HR").mkdir()
    with pytest.raises(ValueError, match="has a HR/ folder but no LR/ folder"):
        read_deeplense(tmp_path)


# --------------------------------------------------------------------------------------
# read_deeplense: errors
# --------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nope'}: no such")):
        read_deeplense(tmp_path / "nope")


def test_no_class_folder_lists_contents_and_accepted_names(tmp_path):
    (tmp_path / "train" / "no_sub").mkdir(parents=True)
    (tmp_path / "sub").mkdir()  # not an accepted name
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no class folder found") as info:
        read_deeplense(tmp_path)
    text = str(info.value)
    assert "notes.txt, sub/, train/" in text
    assert "no_sub/, no_substructure/, cdm/, subhalo/, axion/, vort/" in text
    assert f"did you mean {tmp_path / 'train'}?" in text


def test_class_folder_without_npy(tree):
    root, _ = tree
    for path in (root / "cdm").iterdir():
        path.rename(path.with_suffix(".npz"))
    with pytest.raises(ValueError, match=re.escape(f"{root / 'cdm'}: no .npy file in the "
                                                   "class folder of 'cdm'")):
        read_deeplense(root)


def test_mixed_shapes_name_the_file_and_both_shapes(tree):
    root, _ = tree
    np.save(root / "cdm" / "c.npy", image(9, (8, 8)))
    message = (f"{root / 'cdm' / 'c.npy'}: image shape (8, 8) differs from the shape "
               f"(16, 16) of {root / 'no_sub' / 'img_10.npy'}")
    with pytest.raises(ValueError, match=re.escape(message)):
        read_deeplense(root)


@pytest.mark.parametrize("array, problem", [
    (np.ones(N), r"shape \(16,\)"),
    (np.ones((2, N, N)), r"shape \(2, 16, 16\)"),
    (np.ones((1, 1, N, N)), r"shape \(1, 1, 16, 16\)"),
    (np.array([["a", "b"], ["c", "d"]]), "dtype <U1"),
    (np.ones((N, N), complex), "dtype complex128"),
    (np.ones((N, N), bool), "dtype bool"),
    (np.ones((0, N)), "is empty"),
    (np.full((N, N), np.nan), "no finite pixel"),
])
def test_non_image_arrays(tree, array, problem):
    root, _ = tree
    np.save(root / "cdm" / "bad.npy", array)
    with pytest.raises(ValueError, match=re.escape(str(root / "cdm" / "bad.npy")) +
                       f": not an image: .*{problem}"):
        read_deeplense(root)


@pytest.mark.parametrize("element0, element1, problem", [
    ("text", 1e-23, "element 0 is str, not a 2-D or 3-D image"),
    (np.ones(N), 1e-23, r"element 0 is an array of shape \(16,\)"),
    (image(1), "heavy", "element 1 is str, not a float"),
    (image(1), True, "element 1 is bool"),
])
def test_bad_axion_layout(tmp_path, element0, element1, problem):
    (tmp_path / "axion").mkdir()
    axion_file(tmp_path / "axion" / "a.npy", element0, element1)
    with pytest.raises(ValueError, match=r"a\.npy: not a DeepLense \[image, axion_mass\] "
                                         f"file: {problem}"):
        read_deeplense(tmp_path)


def test_other_object_arrays_are_never_unpickled(tmp_path):
    # Unpickling this array would create `marker`: refusing it must not run pickle.
    marker = tmp_path / "pickle-ran"

    class Trap:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    (tmp_path / "axion").mkdir()
    array = np.empty(3, dtype=object)
    array[0], array[1], array[2] = image(1), 1e-23, Trap()
    np.save(tmp_path / "axion" / "a.npy", array)
    with pytest.raises(ValueError, match=r"a\.npy: an object array of shape \(3,\)"):
        read_deeplense(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [
    b"not a numpy file at all",
    "truncated",
    "truncated-pickle",
])
def test_corrupt_npy(tmp_path, content):
    (tmp_path / "axion").mkdir()
    path = tmp_path / "axion" / "a.npy"
    if content == "truncated":
        np.save(path, image(1))
    elif content == "truncated-pickle":
        axion_file(path, image(1), 1e-23)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable .npy file")):
        read_deeplense(tmp_path)


def test_two_folders_for_one_class(tree):
    root, _ = tree
    (root / "subhalo").mkdir()
    with pytest.raises(ValueError, match="both cdm/ and subhalo/ hold the class 'cdm'"):
        read_deeplense(root)


def test_classes_unknown_or_missing(tree):
    root, _ = tree
    with pytest.raises(ValueError, match="unknown class 'sub'; use one of no_sub, cdm, axion"):
        read_deeplense(root, classes=["sub"])
    (root / "cdm" / "a.npy").unlink()
    (root / "cdm" / "b.npy").unlink()
    (root / "cdm").rmdir()
    with pytest.raises(FileNotFoundError, match=r"no folder for the class 'cdm' \(looked "
                                                r"for cdm/, subhalo/\)"):
        read_deeplense(root, classes=["cdm", "axion"])


# --------------------------------------------------------------------------------------
# lensenhance convert deeplense
# --------------------------------------------------------------------------------------


def convert(*args):
    return CliRunner().invoke(cli, ["-q", "convert", "deeplense", *map(str, args)])


def test_cli_writes_fits_and_catalog(tree, tmp_path):
    root, expected = tree
    out = tmp_path / "out"
    result = convert(root, "--out", out)
    assert result.exit_code == 0, result.output
    assert "6 of 6 image(s) converted, 0 failed" in result.output
    table = io.read_catalog(out / "catalog.ecsv")
    assert len(table) == 6
    # `enhance --catalog` reads the column "path" (its --path-column default).
    assert table["path"].tolist() == [str((out / c / f).with_suffix(".fits").resolve())
                                      for c, f, _, _ in expected]
    assert table["class"].tolist() == [e[0] for e in expected]
    assert table["label"].tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(table["axion_mass"], [e[3] for e in expected])
    assert str(table["axion_mass"].unit) == "eV"
    assert table["source_file"].tolist() == [str((root / c / f).resolve())
                                             for c, f, _, _ in expected]
    for row, (cls, name, img, mass) in zip(table, expected):
        ccd = io.read_image(row["path"])
        assert ccd.shape == (N, N)
        np.testing.assert_array_equal(ccd.data, img.astype(np.float32))
        assert ccd.header["DLCLASS"] == cls and ccd.header["DLSOURCE"] == name
        assert ccd.header.get("AXMASS") == (None if np.isnan(mass) else mass)


def test_cli_class_option_and_sr_layout(tree, sr_tree, tmp_path):
    root, _ = tree
    result = convert(root, "--out", tmp_path / "ax", "--class", "axion")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "ax").rglob("*.fits")) == [
        "axion_sim_1.fits", "axion_sim_2.fits"]
    assert io.read_catalog(tmp_path / "ax" / "catalog.ecsv")["label"].tolist() == [2, 2]

    result = convert(sr_tree, "--out", tmp_path / "sr_out")
    assert result.exit_code == 0, result.output
    assert "2 of 2 pair(s) converted" in result.output
    table = io.read_catalog(tmp_path / "sr_out" / "catalog.ecsv")
    assert table["path"].tolist() == table["lr_path"].tolist()
    np.testing.assert_array_equal(io.read_image(table["path"][0]).data,
                                  image(21, (N, N)).astype(np.float32))
    np.testing.assert_array_equal(io.read_image(table["hr_path"][0]).data,
                                  image(11, (2 * N, 2 * N)).astype(np.float32))
    assert table["hr_file"][1] == str((sr_tree / "HR" / "s2.npy").resolve())


def test_cli_refuses_to_overwrite(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "out"
    assert convert(root, "--out", out).exit_code == 0
    target = out / "cdm" / "a.fits"
    np.save(root / "cdm" / "a.npy", image(99))
    result = convert(root, "--out", out)
    assert result.exit_code == 1
    assert f"{out / 'catalog.ecsv'} exists (7 target file(s) exist)" in result.output
    assert "--overwrite" in result.output
    np.testing.assert_array_equal(io.read_image(target).data, image(3).astype(np.float32))

    result = convert(root, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(io.read_image(target).data, image(99).astype(np.float32))


def test_cli_reports_a_bad_file_and_converts_the_others(tree, tmp_path):
    root, expected = tree
    bad = root / "cdm" / "c.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    np.save(root / "no_sub" / "img_3.npy", np.ones((3, N, N)))
    out = tmp_path / "out"
    result = convert(root, "--out", out)
    assert result.exit_code == 1
    assert f"error: {bad}: not a readable .npy file" in result.output
    assert f"error: {root / 'no_sub' / 'img_3.npy'}: not an image: shape (3, 16, 16)" \
        in result.output
    assert "6 of 8 image(s) converted, 2 failed" in result.output
    assert "2 of 8 file(s) could not be converted" in result.output
    table = io.read_catalog(out / "catalog.ecsv")
    assert [os.path.basename(p) for p in table["source_file"]] == [f for _, f, _, _ in expected]
    assert not (out / "cdm" / "c.fits").exists()
    assert not (out / "no_sub" / "img_3.fits").exists()
    np.testing.assert_array_equal(io.read_image(table["path"][5]).data,
                                  image(6).astype(np.float32))


def test_cli_layout_error_is_a_clean_failure(tmp_path):
    result = convert(tmp_path / "nope", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'nope'}: no such folder" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists()
