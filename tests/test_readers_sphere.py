"""Spherical map readers on HEALPix maps drawn by healpy.synfast and written by healpy.write_map.

References: the map array handed to healpy.write_map (RING order; a NESTED file is written
from healpy.reorder of it), healpy.pix2vec for the pixel centres.
"""
from __future__ import annotations

import gzip

import healpy
import numpy as np
import pytest

from pipelines.demo_data import power_law_map
from reader_checks import read_error, read_samples

NSIDE = 16
NPIX = 12 * NSIDE**2


@pytest.fixture(scope="module")
def ring_map() -> np.ndarray:
    return power_law_map(alpha=2.0, seed=7, nside=NSIDE)


def one_map(path):
    (sample,) = read_samples(path, "sphere")
    assert sample.values.dtype == np.float64 and sample.values.dtype.isnative
    return sample


def test_ring_fits(tmp_path, ring_map):
    healpy.write_map(tmp_path / "ring.fits", ring_map)
    sample = one_map(tmp_path / "ring.fits")
    assert sample.nside == NSIDE and sample.values.shape == (NPIX, 1)
    np.testing.assert_array_equal(sample.values[:, 0], ring_map)
    np.testing.assert_array_equal(sample.pos, np.stack(healpy.pix2vec(NSIDE, np.arange(NPIX)), axis=1))
    np.testing.assert_allclose(np.linalg.norm(sample.pos, axis=1), 1.0, rtol=1e-12)


def test_nested_fits_is_reordered_to_ring(tmp_path, ring_map):
    healpy.write_map(tmp_path / "nest.fits", healpy.reorder(ring_map, r2n=True), nest=True)
    np.testing.assert_array_equal(one_map(tmp_path / "nest.fits").values[:, 0], ring_map)


def test_every_field_is_a_channel_and_gzip_reads_the_same(tmp_path, ring_map):
    fields = [ring_map, 2 * ring_map, ring_map**2]
    healpy.write_map(tmp_path / "iqu.fits", fields, column_names=["I", "Q", "U"])
    sample = one_map(tmp_path / "iqu.fits")
    np.testing.assert_array_equal(sample.values, np.stack(fields, axis=1))
    (tmp_path / "iqu.fits.gz").write_bytes(gzip.compress((tmp_path / "iqu.fits").read_bytes()))
    zipped = one_map(tmp_path / "iqu.fits.gz")
    np.testing.assert_array_equal(zipped.values, sample.values)
    assert zipped.sample_id == sample.sample_id


def test_npy_vectors_and_channel_matrices(tmp_path, ring_map):
    np.save(tmp_path / "one.npy", ring_map.astype(np.float32))
    np.save(tmp_path / "two.npy", np.stack([ring_map, -ring_map], axis=1))
    np.testing.assert_array_equal(one_map(tmp_path / "one.npy").values[:, 0], ring_map.astype(np.float32))
    np.testing.assert_array_equal(one_map(tmp_path / "two.npy").values[:, 1], -ring_map)


# ---- broken input ----

def test_wrong_length_names_the_nearest_valid_lengths(tmp_path, ring_map):
    np.save(tmp_path / "short.npy", ring_map[:3000])
    read_error(tmp_path / "short.npy", "sphere", "wrong-map-length", mentions=("3000", "768 (nside 8)", "3072 (nside 16)"))
    np.save(tmp_path / "nside3.npy", np.zeros(12 * 9))   # 12·3², but 3 is no power of two
    read_error(tmp_path / "nside3.npy", "sphere", "wrong-map-length", mentions=("108",))
    np.save(tmp_path / "transposed.npy", np.stack([ring_map, ring_map]))
    read_error(tmp_path / "transposed.npy", "sphere", "wrong-map-length", mentions=("transpose",))


def test_non_finite_and_unseen_pixels(tmp_path, ring_map):
    nan_map = ring_map.copy()
    nan_map[[5, 9]] = np.nan
    np.save(tmp_path / "nan.npy", nan_map)
    read_error(tmp_path / "nan.npy", "sphere", "non-finite-values", mentions=("2 of 3072", "pixel 5"))
    masked = ring_map.copy()
    masked[100:110] = healpy.UNSEEN
    healpy.write_map(tmp_path / "masked.fits", masked)
    read_error(tmp_path / "masked.fits", "sphere", "masked-pixels", mentions=("10 of 3072", "pixel 100"))


def test_truncated_files(tmp_path, ring_map):
    healpy.write_map(tmp_path / "full.fits", ring_map)
    np.save(tmp_path / "full.npy", ring_map)
    for name in ("full.fits", "full.npy"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / name.replace("full", "cut")
        cut.write_bytes(data[: len(data) // 2])
        read_error(cut, "sphere", "truncated")
    # cut at a FITS block boundary: only the data size the header declares gives it away
    (tmp_path / "block.fits").write_bytes((tmp_path / "full.fits").read_bytes()[: 5 * 2880])
    read_error(tmp_path / "block.fits", "sphere", "truncated")


def test_unusable_files(tmp_path, ring_map):
    (tmp_path / "garbage.fits").write_bytes(bytes(range(7, 250)) * 12)   # 2916 bytes, not a FITS block
    read_error(tmp_path / "garbage.fits", "sphere", "truncated")
    (tmp_path / "garbage2.fits").write_bytes(b"garbage!" * 360)        # exactly one 2880-byte block
    read_error(tmp_path / "garbage2.fits", "sphere", "parse-error")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * NPIX, dtype=object), allow_pickle=True)
    read_error(tmp_path / "objects.npy", "sphere", "parse-error", mentions=("object",))
    healpy.write_map(tmp_path / "unordered.fits", ring_map)
    from astropy.io import fits
    with fits.open(tmp_path / "unordered.fits", mode="update") as hdus:
        del hdus[1].header["ORDERING"]
    read_error(tmp_path / "unordered.fits", "sphere", "parse-error", mentions=("ORDERING",))
