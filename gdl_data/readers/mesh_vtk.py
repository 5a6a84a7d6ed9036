"""VTK files (legacy .vtk, XML .vtp / .vtu) to vertices and triangles, through pyvista.

VTK readers do not raise on a bad file: they log an error and hand back whatever they had read
(a truncated file becomes a smaller, valid-looking mesh). So every VTK error logged while
reading is caught and turned into a ReadError.
"""
from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

from gdl_data.errors import ReadError

# Fragments of VTK's messages that mean the data stops before what the file declared.
_TRUNCATION_SIGNS = ("premature eof", "error reading binary", "mismatch of datasize",
                     "no element found", "error reading ascii data", "unexpected end")


def load_vtk(data: bytes, ext: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(pos, faces) of a VTK file's surface: PolyData as is, volume grids by their outer surface.

    Polygons and triangle strips are split into triangles; vertices keep the file's order for
    PolyData (a volume grid's surface keeps only its boundary points, renumbered by VTK).
    Lines and vertex cells carry no faces; a file with no polygons is a point cloud.
    """
    import pyvista as pv

    suffix = ".vtk" if ext == ".vtk.gz" else ext   # pyvista picks its reader by the suffix
    with tempfile.TemporaryDirectory(prefix="gdl-vtk-") as tmp:
        path = os.path.join(tmp, "mesh" + suffix)
        with open(path, "wb") as fh:
            fh.write(data)
        with pv.vtk_verbosity("off"), pv.VtkErrorCatcher(send_to_logging=False) as caught, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")   # pyvista repeats VTK's errors as warnings
            dataset = pv.read(path)
            surface = None if _errors(caught) else _surface(dataset, source)
    errors = _errors(caught)
    if errors:
        message = errors[0].replace(path, os.path.basename(source)).strip()
        kind = "truncated" if any(sign in message.lower() for sign in _TRUNCATION_SIGNS) else "parse-error"
        raise ReadError(source, f"VTK cannot read the file: {message}", kind=kind)
    return surface


def _errors(caught) -> list[str]:
    return [event.alert for event in caught.events if event.kind == "ERROR"]


def _surface(dataset, source: str) -> tuple[np.ndarray, np.ndarray]:
    import pyvista as pv

    if isinstance(dataset, pv.MultiBlock):
        raise ReadError(source, "a VTK multi-block file: write one mesh per file", kind="unsupported-format")
    if not isinstance(dataset, pv.PolyData):
        dataset = dataset.extract_surface(algorithm="dataset_surface")
    pos = np.asarray(dataset.points, dtype=np.float64)
    if dataset.n_cells == 0:
        return pos, np.zeros((0, 3), dtype=np.int64)
    triangles = dataset.triangulate()   # keeps the points; drops lines and vertex cells
    faces = np.asarray(triangles.faces, dtype=np.int64).reshape(-1, 4)[:, 1:]
    return np.asarray(triangles.points, dtype=np.float64), faces
