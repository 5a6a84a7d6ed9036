"""Sizes a mesh file declares in its header, checked against what the file holds.

trimesh reads a PLY whose header promises more rows than the file has without complaint (it
returns the rows it found, or rows misread from the wrong bytes), so a file cut short in transit
would pass as a smaller, wrong mesh. These checks run on the raw bytes first and name what was
promised and what is there. OBJ declares nothing, so a cut exactly at a line end is undetectable.
"""
from __future__ import annotations

import re
import struct

_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2,
              "uint16": 2, "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4,
              "double": 8, "float64": 8}


def truncation_problem(ext: str, data: bytes) -> str | None:
    """A message when `data` (a whole file with extension `ext`) is shorter than it declares."""
    check = {".ply": _ply, ".off": _off, ".stl": _stl, ".glb": _glb, ".vtk": _vtk_legacy,
             ".vtk.gz": _vtk_legacy, ".vtp": _vtk_xml, ".vtu": _vtk_xml}.get(ext)
    return check(data) if check else None


def _ply(data: bytes) -> str | None:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        return None  # not a PLY header at all: the parser's own error says so
    body_start = data.find(b"\n", end) + 1
    header = data[:end].decode("ascii", "replace").split("\n")
    encoding, elements = "ascii", []   # elements: [name, count, least bytes per row]
    for line in header:
        words = line.split()
        if words[:1] == ["format"] and len(words) > 1:
            encoding = words[1]
        elif words[:1] == ["element"] and len(words) == 3 and words[2].isdigit():
            elements.append([words[1], int(words[2]), 0])
        elif words[:1] == ["property"] and elements and len(words) >= 3:
            if words[1] == "list" and len(words) >= 5:
                # a list row holds its length and, for a face, at least a triangle
                least_items = 3 if elements[-1][0] == "face" else 0
                elements[-1][2] += _PLY_SIZES.get(words[2], 1) + least_items * _PLY_SIZES.get(words[3], 1)
            else:
                elements[-1][2] += _PLY_SIZES.get(words[1], 1)
    declared = ", ".join(f"{count} {name}" for name, count, _ in elements)
    body = data[body_start:]
    if encoding == "ascii":
        rows = sum(1 for line in body.splitlines() if line.strip())
        needed = sum(count for _, count, _ in elements)
        if rows < needed:
            return f"the PLY header declares {declared} rows ({needed}) but the file holds {rows}"
        return None
    needed = sum(count * row_bytes for _, count, row_bytes in elements)
    if len(body) < needed:
        return (f"the PLY header declares {declared} rows, at least {needed} bytes of "
                f"{encoding} data, but the file holds {len(body)}")
    return None


def _off(data: bytes) -> str | None:
    lines = [line.split(b"#")[0].strip() for line in data.splitlines()]
    lines = [line for line in lines if line]
    first = lines[0].split() if lines else []
    if not first or not first[0].endswith(b"OFF"):   # OFF, COFF, NOFF, ...
        return None
    # the counts follow the keyword on its own line or on the next one
    if len(first) > 1:
        counts, rest = first[1:], lines[1:]
    else:
        counts, rest = (lines[1].split() if len(lines) > 1 else []), lines[2:]
    try:
        num_vertices, num_faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        return None
    if len(rest) < num_vertices + num_faces:
        return (f"the OFF header declares {num_vertices} vertices and {num_faces} faces "
                f"({num_vertices + num_faces} rows) but the file holds {len(rest)}")
    return None


def _stl(data: bytes) -> str | None:
    if len(data) >= 84:
        (num_triangles,) = struct.unpack("<I", data[80:84])
        expected = 84 + 50 * num_triangles
        if len(data) == expected:
            return None
        if not data.lstrip().startswith(b"solid"):
            if len(data) < expected:
                return (f"the binary STL header declares {num_triangles} triangles "
                        f"({expected} bytes) but the file holds {len(data)} bytes")
            return None
    if data.lstrip().startswith(b"solid") and b"endsolid" not in data:
        return "the ASCII STL has no closing 'endsolid' line"
    return None


def _glb(data: bytes) -> str | None:
    if len(data) >= 12 and data[:4] == b"glTF":
        (declared,) = struct.unpack("<I", data[8:12])
        if len(data) < declared:
            return f"the GLB header declares {declared} bytes but the file holds {len(data)}"
    return None


# Legacy VTK: "POINTS n type" holds 3n values, a cell section "POLYGONS n size" holds `size`
# values. VTK allocates what the header declares before reading, so a 1 kB file declaring 10^10
# points would ask for 120 GB: every value takes at least one byte of the file, so a count above
# the file's length is refused before VTK sees it.
_VTK_SECTIONS = {b"POINTS": lambda n, rest: 3 * n, b"POLYGONS": lambda n, rest: rest,
                 b"TRIANGLE_STRIPS": lambda n, rest: rest, b"CELLS": lambda n, rest: rest,
                 b"LINES": lambda n, rest: rest, b"VERTICES": lambda n, rest: rest,
                 b"POINT_DATA": lambda n, rest: n, b"CELL_DATA": lambda n, rest: n}


def _vtk_legacy(data: bytes) -> str | None:
    if not data.startswith(b"# vtk DataFile"):
        return None
    for match in re.finditer(rb"^(POINTS|POLYGONS|TRIANGLE_STRIPS|CELLS|LINES|VERTICES|POINT_DATA|CELL_DATA)"
                             rb"[ \t]+(\d+)(?:[ \t]+(\d+))?", data, re.MULTILINE):
        name, count = match.group(1), int(match.group(2))
        values = _VTK_SECTIONS[name](count, int(match.group(3) or 0))
        if values > len(data):
            return (f"the VTK header declares {name.decode()} {count} ({values} values) but the whole "
                    f"file holds {len(data)} bytes")
    return None


# VTK XML (.vtp, .vtu): NumberOfPoints / NumberOfCells / NumberOf{Polys,Strips,Verts,Lines}. The
# data may be zlib-compressed, so allow MAX_INFLATE_RATIO (validate.py) values per byte.
def _vtk_xml(data: bytes) -> str | None:
    from gdl_data.readers.validate import MAX_INFLATE_RATIO

    limit = max(1 << 20, MAX_INFLATE_RATIO * len(data))
    for match in re.finditer(rb'NumberOf(\w+)\s*=\s*"\s*(\d+)\s*"', data[:1 << 16]):
        if int(match.group(2)) > limit:
            return (f"the VTK XML header declares NumberOf{match.group(1).decode()}={int(match.group(2))}, "
                    f"more than {MAX_INFLATE_RATIO} per byte of the {len(data)}-byte file")
    return None
