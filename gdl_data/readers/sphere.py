"""Spherical map readers: HEALPix FITS (through healpy) and .npy arrays; one map per file.

Stored in RING order with `values` of shape (n, c), n = 12 nside², and `pos` the pixel
centres as unit vectors (healpy.pix2vec). Rules:
- FITS: every column of the map table is a channel. The `ORDERING` header keyword decides
  the pixel order and NESTED maps are reordered to RING; a file without it is rejected (RING
  and NESTED cannot be told apart). Partial-sky (explicit-index) files are rejected.
- .npy: shape (n,) or (n, c), taken to be in RING order (write NESTED maps as FITS).
- nside must be a power of two (NESTED order and hierarchical pooling need it): a wrong
  length is rejected with the nearest valid lengths ("wrong-map-length").
- Values must be finite. healpy's UNSEEN marker (-1.6375e30) is rejected as well
  ("masked-pixels"): a stored map has no mask, and UNSEEN would enter training as a huge
  number. Fill masked pixels first (e.g. `healpy.ma(m).filled(0)`).
`sample_id` hashes the file's bytes (a .fits.gz its decompressed bytes).
"""
from __future__ import annotations

import io
import warnings
from typing import Iterator

import numpy as np

from gdl_data.domains import SphereMap, content_id
from gdl_data.errors import ReadError
from gdl_data.readers import register_reader
from gdl_data.readers.validate import check_float32_range, never_raises, parse_failure, read_raw

UNSEEN = -1.6375e30   # healpy.UNSEEN, spelled out so that .npy maps are checked without healpy
_FITS_BLOCK = 2880    # a FITS file is a whole number of these blocks


def nside_of(num_pixels: int, source: str) -> int:
    """nside for a map of `num_pixels` (12 nside², nside a power of two), else a ReadError."""
    nside = int(round(np.sqrt(num_pixels / 12))) if num_pixels > 0 else 0
    if nside > 0 and 12 * nside * nside == num_pixels and nside & (nside - 1) == 0:
        return nside
    below = 1 << max(int(np.floor(np.log2(max(num_pixels, 12) / 12) / 2)), 0)
    nearest = [f"{12 * k * k} (nside {k})" for k in sorted({below, 2 * below}) if 12 * k * k != num_pixels]
    raise ReadError(source, f"a HEALPix map has 12·nside² pixels with nside a power of two; this one has "
                            f"{num_pixels}. Nearest valid lengths: {', '.join(nearest)}",
                    kind="wrong-map-length")


def sphere_map(values: np.ndarray, source: str, sample_id: str) -> SphereMap:
    """A SphereMap from RING-ordered values (n,) or (n, c), checked; `pos` from healpy."""
    import healpy

    values = np.asarray(values, dtype=np.float64)
    values = values.reshape(len(values), -1)
    nside = nside_of(len(values), source)
    if values.shape[1] == 0:
        raise ReadError(source, "the map has no channels", kind="empty")
    for test, kind, what in ((values == UNSEEN, "masked-pixels",
                              "are UNSEEN (healpy's mask value): fill them first, e.g. healpy.ma(m).filled(0)"),
                             (~np.isfinite(values), "non-finite-values", "are NaN or infinite")):
        bad = np.flatnonzero(test.any(axis=1))
        if len(bad):
            raise ReadError(source, f"{len(bad)} of {len(values)} pixels {what} (first: pixel {bad[0]})",
                            kind=kind)
    check_float32_range(values, source, "pixel values")
    pos = np.stack(healpy.pix2vec(nside, np.arange(len(values))), axis=1)
    return SphereMap(source=source, sample_id=sample_id, nside=nside, values=values, pos=pos)


@never_raises
def read_healpix_fits(path: str, source: str) -> Iterator[SphereMap | ReadError]:
    """Yield the map of a HEALPix FITS file (all columns, RING order), or a ReadError."""
    import healpy
    from astropy.io import fits

    data = read_raw(path, source)
    failure = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdus = fits.open(io.BytesIO(data), memmap=False)
            if len(hdus) < 2:
                raise ValueError("no table extension (HDU 1) holding a map")
            header = hdus[1].header
            if header.get("INDXSCHM", "IMPLICIT").strip() == "EXPLICIT":
                raise ReadError(source, "a partial-sky map (explicit pixel indices): write the full sky",
                                kind="partial-sky")
            ordering = str(header.get("ORDERING", "")).strip().upper()
            if ordering not in ("RING", "NESTED"):
                raise ReadError(source, f"the ORDERING keyword is {ordering or 'missing'}; it must say RING "
                                        f"or NESTED, else the pixel order is unknown", kind="parse-error")
            values = healpy.read_map(hdus, field=None, nest=False, dtype=np.float64)   # NESTED -> RING
        except ReadError:
            raise
        except Exception as exc:   # noqa: BLE001 - astropy and healpy fail in many ways on bad files
            failure = exc
    if any("truncated" in str(w.message) for w in caught) or (failure and len(data) % _FITS_BLOCK):
        raise ReadError(source, f"the file ends early: {len(data)} bytes, not the whole {_FITS_BLOCK}-byte "
                                f"blocks its headers declare", kind="truncated")
    if failure is not None:
        raise parse_failure(source, failure, "not a HEALPix FITS map: ")
    yield sphere_map(np.atleast_2d(values).T, source, content_id(data))


@never_raises
def read_npy_map(path: str, source: str) -> Iterator[SphereMap | ReadError]:
    """Yield the map of a .npy array of shape (n,) or (n, c) in RING order, or a ReadError."""
    data = read_raw(path, source)
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    except ValueError as exc:
        raise ReadError(source, f"not a .npy array: {exc}", kind="parse-error") from None
    if dtype.hasobject or dtype.kind not in "iuf":
        raise ReadError(source, f"the array holds {dtype}; a map needs real numbers", kind="parse-error")
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - stream.tell() < expected:
        raise ReadError(source, f"the header declares shape {shape} ({expected} bytes of {dtype}) but the "
                                f"file holds {len(data) - stream.tell()} bytes of data", kind="truncated")
    if len(shape) not in (1, 2):
        raise ReadError(source, f"shape {shape}: a map is (n,) or (n, channels)", kind="wrong-map-length")
    if len(shape) == 2 and not _valid_length(shape[0]) and _valid_length(shape[1]):
        raise ReadError(source, f"shape {shape}: the pixels run along the second axis; a map is "
                                f"(n, channels): save the transpose", kind="wrong-map-length")
    yield sphere_map(np.load(io.BytesIO(data), allow_pickle=False), source, content_id(data))


def _valid_length(num_pixels: int) -> bool:
    try:
        nside_of(num_pixels, "")
    except ReadError:
        return False
    return True


register_reader("sphere", (".fits", ".fits.gz", ".fit"), read_healpix_fits)
register_reader("sphere", (".npy",), read_npy_map)
