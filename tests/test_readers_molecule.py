"""Molecule readers on RDKit's bundled 3D SDF test sets, conversions of them, and broken copies.

References: the SDF files' own atom and bond tables (as RDKit's SDMolSupplier gives them, read
here directly), their data fields, and for formats without bonds (XYZ) the chemists' bond
table of the same molecule.
"""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from rdkit import Chem, RDConfig

from gdl_data.domains import Molecule
from gdl_data.errors import ReadError
from reader_checks import read_all, read_error, read_samples

CDK2 = os.path.join(RDConfig.RDContribDir, "Fastcluster", "testdata", "cdk2.sdf")   # 47 ligands, 3D
CMET = os.path.join(RDConfig.RDContribDir, "FreeWilson", "data", "cmet_ligands.sdf")  # 24, with r_exp_dg
NCI_2D = os.path.join(RDConfig.RDDataDir, "NCI", "first_200.props.sdf")              # 200 2D drawings


@pytest.fixture(scope="module")
def cdk2():
    return list(Chem.SDMolSupplier(CDK2, removeHs=False))


def bond_set(bond_index: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(sorted(pair)) for pair in bond_index.T.tolist()}


def rdkit_bonds(mol) -> set[tuple[int, int]]:
    return {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}


def test_sdf_records_match_the_atom_and_bond_tables(cdk2):
    molecules = read_samples(CDK2, "molecule")
    assert len(molecules) == len(cdk2) == 47
    assert [m.source for m in molecules] == [f"{CDK2}#{i}" for i in range(47)]
    for molecule, reference in zip(molecules, cdk2):
        np.testing.assert_array_equal(molecule.pos, reference.GetConformer().GetPositions())
        np.testing.assert_array_equal(molecule.z, [a.GetAtomicNum() for a in reference.GetAtoms()])
        assert (molecule.z == 1).any()   # explicit hydrogens are kept
        # both directions, each bond exactly twice
        assert molecule.bond_index.shape == (2, 2 * reference.GetNumBonds())
        assert bond_set(molecule.bond_index) == rdkit_bonds(reference)
        assert set(map(tuple, molecule.bond_index.T.tolist())) == \
            {p for a, b in rdkit_bonds(reference) for p in ((a, b), (b, a))}
    assert molecules[0].props["r_mmffld_Potential_Energy-OPLS_2005"] == pytest.approx(-78.6454)
    assert "MODEL.SOURCE" not in molecules[0].props   # text fields are no numbers


def test_sdf_numeric_property_becomes_a_prop():
    molecules = read_samples(CMET, "molecule")
    assert len(molecules) == 24
    assert molecules[0].props["r_exp_dg"] == pytest.approx(-9.13905)   # the first record's field


def test_editing_one_record_changes_only_its_id(tmp_path):
    data = open(CDK2, "rb").read()
    ids = [m.sample_id for m in read_samples(CDK2, "molecule")]
    assert len(set(ids)) == len(ids)
    records = data.split(b"$$$$\n")
    records[3] = records[3].replace(b"CORINA", b"corina", 1)   # an edit inside record 3 only
    (tmp_path / "edited.sdf").write_bytes(b"$$$$\n".join(records))
    edited = [m.sample_id for m in read_samples(tmp_path / "edited.sdf", "molecule")]
    assert [i for i, (a, b) in enumerate(zip(ids, edited)) if a != b] == [3]


# Data items in the forms RDKit's supplier accepts, and odd ones: values are RDKit's reading of
# the same record (its supplier, which the reader bypasses for plain data items).
DATA_ITEMS = [
    b">  <a>\n 1 \n \n> <b>\n2\n\n",        # a blank-looking line is a value line, not an end
    b"> <a>\n1\n2\n\n> <b>\n3\n\n",         # a two-line value is text, not a number
    b"> <a>\n\n> <b>\n-0.5e3\n\n",            # an empty value
    b"> <a>\n1\n\n\n\n> <b>\n  7  \n\n",       # blank lines between items; spaces around a number
    b"> <a><b>\n1\n\n> 25 <id> (3)\n007\n\n",   # a name runs from the first < to the last >
    b"> <dup>\n1\n\n> <dup>\n2\n\n",          # the last of two items of one name wins
    b"> <big>\n2147483648\n\n> <nan>\nNaN\n\n> <over>\n1e400\n\n> <inf>\nInfinity\n\n",
    b">  <a>\r\n1\r\n\r\n",                   # carriage returns: left to the supplier
    b"junk\n> <a>\n1\n\n",                     # text outside an item: left to the supplier
    b"> <a\n1\n\n",                             # a header without its closing >
    b"> <a>\n4.25\n",                            # the last value not followed by an empty line
]


@pytest.mark.parametrize("items", DATA_ITEMS)
def test_sdf_data_items_read_as_rdkit_reads_them(items):
    from rdkit import rdBase

    from gdl_data.readers.molecule import parse_sdf_record
    from gdl_data.readers.atoms import numeric_props
    molfile = open(CDK2, "rb").read().split(b"M  END\n")[0] + b"M  END\n"
    with rdBase.BlockLogs():
        reference = next(Chem.ForwardSDMolSupplier(io.BytesIO(molfile + items + b"\n$$$$\n"),
                                                   removeHs=False))
    molecule = parse_sdf_record(molfile + items, "test.sdf#0")
    expected = numeric_props(reference)
    assert molecule.props.keys() == expected.keys()
    for name, value in expected.items():
        assert molecule.props[name] == value or (np.isnan(value) and np.isnan(molecule.props[name]))
    np.testing.assert_array_equal(molecule.pos, reference.GetConformer().GetPositions())


def test_sdf_record_spans_follow_the_record_end_rule():
    """Random texts of the pieces that matter (`$$$$`, line ends, a lone `$`, text): the spans
    are those of the rule written as a regular expression (a line that starts with $$$$ ends a
    record; a last unterminated record with any non-space text is kept)."""
    import re

    from gdl_data.readers.molecule import sdf_record_spans

    def by_rule(data: bytes) -> list[tuple[int, int]]:
        spans, start = [], 0
        for end in re.finditer(rb"^\$\$\$\$[^\n]*(?:\n|\Z)", data, re.MULTILINE):
            spans.append((start, end.start()))
            start = end.end()
        return spans + ([(start, len(data))] if data[start:].strip() else [])

    rng = np.random.default_rng(0)
    pieces = [b"$$$$", b"\n", b"$", b"x", b" ", b"$$$$\n", b"M  END\n"]
    for _ in range(3000):
        data = b"".join(pieces[i] for i in rng.integers(0, len(pieces), rng.integers(0, 12)))
        assert sdf_record_spans(data) == by_rule(data), data


def test_element_table_is_rdkits():
    from gdl_data.readers.atoms import any_case_numbers, atomic_number, elements
    table = Chem.GetPeriodicTable()
    assert elements() == {table.GetElementSymbol(z): z for z in range(1, 119)}
    numbers = any_case_numbers()
    assert numbers["CL"] == numbers["cl"] == numbers["cL"] == numbers["Cl"] == 17 and numbers["118"] == 118
    assert all(atomic_number(text, case_sensitive=False) == z for text, z in numbers.items())


def test_2d_sdf_is_rejected_record_by_record():
    errors = [read_error(NCI_2D, "molecule", "no-3d-coordinates", record=str(i), mentions=("2D",))
              for i in (0, 199)]
    assert errors[0].source.endswith("#0")


def test_pdb_converted_from_sdf(tmp_path, cdk2):
    reference = cdk2[0]
    (tmp_path / "ligand.pdb").write_text(Chem.MolToPDBBlock(reference))
    (molecule,) = read_samples(tmp_path / "ligand.pdb", "molecule")
    np.testing.assert_allclose(molecule.pos, reference.GetConformer().GetPositions(), atol=5e-4)  # %8.3f
    np.testing.assert_array_equal(molecule.z, [a.GetAtomicNum() for a in reference.GetAtoms()])
    assert bond_set(molecule.bond_index) == rdkit_bonds(reference)


def test_multi_frame_xyz_recovers_the_sdf_bonds_from_distances(tmp_path, cdk2):
    (tmp_path / "frames.xyz").write_text("".join(Chem.MolToXYZBlock(m) for m in cdk2))
    molecules = read_samples(tmp_path / "frames.xyz", "molecule")
    assert [m.source for m in molecules] == [f"{tmp_path / 'frames.xyz'}#{i}" for i in range(47)]
    for molecule, reference in zip(molecules, cdk2):
        np.testing.assert_allclose(molecule.pos, reference.GetConformer().GetPositions(), atol=1e-6)
        np.testing.assert_array_equal(molecule.z, [a.GetAtomicNum() for a in reference.GetAtoms()])
        assert bond_set(molecule.bond_index) == rdkit_bonds(reference)


def extended_xyz(mol, energy: float) -> str:
    """An extended-XYZ frame whose element column is not the first one, as ASE may write."""
    pos = mol.GetConformer().GetPositions()
    lines = [f"{mol.GetNumAtoms()}",
             f'Lattice="0 0 0 0 0 0 0 0 0" Properties=forces:R:3:species:S:1:pos:R:3 '
             f'energy={energy} pbc="F F F" name=ligand']
    lines += [f"0.1 0.2 0.3 {a.GetSymbol()} {x:.6f} {y:.6f} {z:.6f}" for a, (x, y, z) in zip(mol.GetAtoms(), pos)]
    return "\n".join(lines) + "\n"


def test_extended_xyz_columns_and_numeric_info(tmp_path, cdk2):
    (tmp_path / "ext.extxyz").write_text(extended_xyz(cdk2[0], -76.5) + extended_xyz(cdk2[1], -80.25))
    first, second = read_samples(tmp_path / "ext.extxyz", "molecule")
    np.testing.assert_allclose(second.pos, cdk2[1].GetConformer().GetPositions(), atol=1e-6)
    np.testing.assert_array_equal(first.z, [a.GetAtomicNum() for a in cdk2[0].GetAtoms()])
    assert first.props == {"energy": -76.5} and second.props == {"energy": -80.25}


def test_single_record_mol_file_keeps_the_plain_name(tmp_path, cdk2):
    (tmp_path / "one.mol").write_text(Chem.MolToMolBlock(cdk2[0]))
    (molecule,) = read_samples(tmp_path / "one.mol", "molecule")
    assert molecule.source == str(tmp_path / "one.mol")


# ---- broken input ----

def cdk2_records(count: int) -> list[str]:
    return open(CDK2).read().split("$$$$\n")[:count]


def write_sdf(path, records: list[str]) -> None:
    path.write_text("".join(r + "$$$$\n" for r in records))


def atom_line(record: str, atom: int) -> str:
    return record.splitlines()[4 + atom]


def test_one_bad_record_does_not_lose_the_others(tmp_path):
    records = cdk2_records(3)
    line = atom_line(records[1], 2)
    records[1] = records[1].replace(line, line[:31] + "Xx " + line[34:], 1)
    write_sdf(tmp_path / "mixed.sdf", records)
    items = read_all(tmp_path / "mixed.sdf", "molecule")
    assert [type(item) for item in items] == [Molecule, ReadError, Molecule]
    assert [item.source for item in items] == [f"{tmp_path / 'mixed.sdf'}#{i}" for i in range(3)]
    read_error(tmp_path / "mixed.sdf", "molecule", "unknown-element", record="1", mentions=("atom 2", "'Xx'"))


def test_nan_coordinates_truncation_and_valence(tmp_path):
    records = cdk2_records(3)
    line = atom_line(records[0], 0)
    records[0] = records[0].replace(line, "       nan" + line[10:], 1)
    line = atom_line(records[1], 1)   # atom 1 is a carbon with four bonds: as fluorine, valence 4
    records[1] = records[1].replace(line, line[:31] + "F  " + line[34:], 1)
    write_sdf(tmp_path / "bad.sdf", records[:2])
    cut = "".join(r + "$$$$\n" for r in records[:2]) + records[2][: len(records[2]) // 2]
    (tmp_path / "cut.sdf").write_text(cut)
    read_error(tmp_path / "bad.sdf", "molecule", "non-finite-coordinates", record="0", mentions=("atom 0",))
    read_error(tmp_path / "bad.sdf", "molecule", "invalid-chemistry", record="1", mentions=("valence",))
    read_error(tmp_path / "cut.sdf", "molecule", "truncated", record="2", mentions=("declares",))


def test_garbage_and_empty_files(tmp_path):
    (tmp_path / "garbage.sdf").write_bytes(bytes(range(7, 250)) * 20)
    read_error(tmp_path / "garbage.sdf", "molecule", "parse-error", record="0")
    (tmp_path / "empty.xyz").write_bytes(b"")
    read_error(tmp_path / "empty.xyz", "molecule", "empty")


def test_bad_xyz_frames(tmp_path, cdk2):
    good = Chem.MolToXYZBlock(cdk2[0])
    unknown = good.replace("\nC ", "\nQq ", 1)
    nan = good.replace("\nO ", "\nO nan 0 0 #", 1)
    (tmp_path / "frames.xyz").write_text(good + unknown + nan + good[: len(good) // 2])
    path = tmp_path / "frames.xyz"
    read_error(path, "molecule", "unknown-element", record="1", mentions=("'Qq'",))
    read_error(path, "molecule", "non-finite-coordinates", record="2")
    read_error(path, "molecule", "truncated", record="3", mentions=("30 atoms",))
    assert isinstance(read_all(path, "molecule")[0], Molecule)


def test_pdb_unknown_element(tmp_path, cdk2):
    block = Chem.MolToPDBBlock(cdk2[0]).splitlines()
    block[1] = block[1][:76] + "XX" + block[1][78:]
    (tmp_path / "bad.pdb").write_text("\n".join(block) + "\n")
    read_error(tmp_path / "bad.pdb", "molecule", "unknown-element", mentions=("'XX'",))
