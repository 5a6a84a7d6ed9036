"""XYZ and extended XYZ (multi-frame) files: one Molecule per frame.

A frame is a line with the atom count, a comment line, then one line per atom: the element
(symbol, or atomic number) and x y z in Ångström. Extended XYZ (as written by ASE) puts
`key=value` pairs in the comment line; `Properties=species:S:1:pos:R:3:...` says which columns
hold the element and the position, and every other numeric value (e.g. `energy=-76.4`)
becomes a `Molecule.props` entry. XYZ has no bonds: they are inferred from distances
(atoms.molecule_from_atoms). Frames are `file#i` (i from 0), each hashed by its own lines.
A bad frame yields a ReadError and reading goes on with the next one, unless its atom-count
line is unreadable: then where the next frame starts is unknown and reading stops there.
"""
from __future__ import annotations

import math
import shlex
from typing import Iterator

import numpy as np

from gdl_data.domains import Molecule, content_id
from gdl_data.errors import ReadError
from gdl_data.readers.atoms import atomic_number, molecule_from_atoms, unknown_element
from gdl_data.readers.validate import never_raises, read_raw


def xyz_frame_spans(data: bytes) -> list[tuple[int, int]]:
    """Byte spans [start, stop) of the frames of an (extended) XYZ file, blank lines between
    frames skipped. Where a count line is unreadable or a frame is cut short, the last span runs
    to the end of the file: its parse reports the problem, and nothing after it is a frame."""
    spans, offset = [], 0
    lines = data.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            offset += len(lines[i])
            i += 1
            continue
        count = lines[i].split()[0]
        end = i + 2 + int(count) if count.isdigit() else len(lines) + 1
        if end > len(lines):
            spans.append((offset, len(data)))
            break
        size = sum(len(line) for line in lines[i:end])
        spans.append((offset, offset + size))
        offset, i = offset + size, end
    return spans


@never_raises
def read_xyz(path: str, source: str) -> Iterator[Molecule | ReadError]:
    """Yield one Molecule or ReadError per frame of an (extended) XYZ file."""
    data = read_raw(path, source)
    for frame, (start, stop) in enumerate(xyz_frame_spans(data)):
        try:
            yield parse_xyz_frame(data[start:stop], f"{source}#{frame}")
        except ReadError as err:
            yield err


def parse_xyz_frame(data: bytes, source: str) -> Molecule:
    """One frame's bytes (count line, comment line, atom lines) as a Molecule; raises ReadError."""
    lines = data.splitlines(keepends=True)
    count_field = lines[0].split()[0].decode("latin-1") if lines and lines[0].split() else ""
    if not count_field.isdigit():
        raise ReadError(source, f"the frame's first line should hold its atom count, found "
                                f"{count_field[:30]!r}; stopped reading here", kind="parse-error")
    if 2 + int(count_field) > len(lines):
        raise ReadError(source, f"the frame declares {count_field} atoms but the file ends "
                                f"after {max(len(lines) - 2, 0)} atom lines", kind="truncated")
    return _frame(lines, source)


def _frame(lines: list[bytes], source: str) -> Molecule:
    text = [line.decode("latin-1") for line in lines]
    if len(text) == 2:
        raise ReadError(source, "the frame has 0 atoms", kind="empty")
    species_col, pos_col, props = _columns_and_props(text[1], source)
    z = np.empty(len(text) - 2, dtype=np.int64)
    pos = np.empty((len(text) - 2, 3))
    for atom, line in enumerate(text[2:]):
        fields = line.split()
        if len(fields) < max(species_col, pos_col + 2) + 1:
            raise ReadError(source, f"atom {atom}: the line {line.strip()[:60]!r} has {len(fields)} "
                                    f"fields; the element and x y z are needed", kind="parse-error")
        number = atomic_number(fields[species_col], case_sensitive=False)
        if number is None:
            raise unknown_element(source, atom, fields[species_col])
        z[atom] = number
        try:
            pos[atom] = [float(v) for v in fields[pos_col:pos_col + 3]]
        except ValueError:
            raise ReadError(source, f"atom {atom}: cannot read coordinates {fields[pos_col:pos_col + 3]}",
                            kind="parse-error") from None
    return molecule_from_atoms(z, pos, source, content_id(b"".join(lines)), props)


def _columns_and_props(comment: str, source: str) -> tuple[int, int, dict[str, float]]:
    """(element column, first position column, numeric props) from a comment line."""
    if "=" not in comment:
        return 0, 1, {}   # plain XYZ: free text
    try:
        pairs = dict(token.split("=", 1) for token in shlex.split(comment) if "=" in token)
    except ValueError:
        return 0, 1, {}   # unbalanced quotes: free text after all
    props = {}
    for key, value in pairs.items():
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            props[key] = number
    if "Properties" not in pairs:
        return 0, 1, props
    return (*_property_columns(pairs["Properties"], source), props)


def _property_columns(spec: str, source: str) -> tuple[int, int]:
    """Columns of `species` and `pos` in `Properties=name:type:count:...`."""
    parts = spec.split(":")
    columns, column = {}, 0
    for name, _type, count in zip(parts[0::3], parts[1::3], parts[2::3]):
        columns[name] = column
        column += int(count) if count.isdigit() else 1
    if "species" not in columns or "pos" not in columns:
        raise ReadError(source, f"Properties={spec} names no 'species' or no 'pos' column",
                        kind="parse-error")
    return columns["species"], columns["pos"]
