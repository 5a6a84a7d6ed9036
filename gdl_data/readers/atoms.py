"""From RDKit molecules (or bare atoms and coordinates) to Molecule samples, checked.

Shared by the SDF/MOL, PDB and XYZ readers so that all three apply the same rules.
"""
from __future__ import annotations

import functools

import numpy as np

from gdl_data.domains import Molecule
from gdl_data.errors import ReadError
from gdl_data.readers.validate import both_directions, check_positions


# The elements H..Og in order of atomic number (tests/test_readers_molecule.py checks this
# against RDKit's periodic table, which takes 3 ms to ask symbol by symbol).
SYMBOLS = ("H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
           "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm "
           "Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U "
           "Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og").split()


@functools.cache
def elements() -> dict[str, int]:
    """Element symbol -> atomic number, H..Og (no dummy atom)."""
    return {symbol: z for z, symbol in enumerate(SYMBOLS, start=1)}


def atomic_number(symbol: str, *, case_sensitive: bool = True) -> int | None:
    """The atomic number of an element symbol (or of a number 1..118 given as text), else None."""
    table = elements()
    if symbol in table:
        return table[symbol]
    if not case_sensitive and symbol.capitalize() in table:
        return table[symbol.capitalize()]
    if symbol.isdigit() and 1 <= int(symbol) <= 118:
        return int(symbol)
    return None


@functools.cache
def any_case_numbers() -> dict[str, int]:
    """Every text `atomic_number(text, case_sensitive=False)` accepts, mapped to its number:
    each symbol in every casing ("Cl", "CL", "cl", "cL") and the numbers "1".."118"."""
    out = {str(z): z for z in range(1, 119)}
    for symbol, z in elements().items():
        for casing in (symbol, symbol.upper(), symbol.lower(), symbol[:1].lower() + symbol[1:].upper()):
            out.setdefault(casing, z)
    return out


def unknown_element(source: str, atom: int, symbol: str) -> ReadError:
    return ReadError(source, f"atom {atom} has element '{symbol}', which is not a chemical element "
                             f"(expected a symbol such as C, N, Cl)", kind="unknown-element")


def numeric_props(mol) -> dict[str, float]:
    """The record's numeric data fields (RDKit converts numeric text), e.g. a measured affinity."""
    return {name: float(value) for name, value in mol.GetPropsAsDict().items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def molecule_from_rdkit(mol, source: str, sample_id: str, props: dict[str, float] | None = None,
                        *, require_3d: bool = True, atom_table: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> Molecule:
    """A Molecule from an RDKit Mol's first conformer: positions, atomic numbers, bonds both ways.

    With `require_3d`, a conformer that RDKit marks 2D (the molfile says 2D, or gives no
    dimension and every z is 0) is rejected for more than one atom. `atom_table`: (atomic
    numbers, bonds (b, 2)) the caller already read from the file (the molfile's own atom and
    bond blocks, in RDKit's order), used instead of iterating over RDKit's atoms and bonds when
    their counts agree with RDKit's.
    """
    if mol.GetNumAtoms() == 0:
        raise ReadError(source, "the record has no atoms", kind="empty")
    if mol.GetNumConformers() == 0:
        raise ReadError(source, "the record has no coordinates", kind="no-3d-coordinates")
    conformer = mol.GetConformer()
    pos = check_positions(conformer.GetPositions(), source, "atom")
    if require_3d and len(pos) > 1 and not conformer.Is3D():
        raise ReadError(source, "no 3D coordinates: the record is a 2D drawing (z = 0 for every atom); "
                                "generate a conformer first, e.g. with RDKit's EmbedMolecule",
                        kind="no-3d-coordinates")
    if atom_table is not None and len(atom_table[0]) == len(pos) and len(atom_table[1]) == mol.GetNumBonds():
        z, bonds = atom_table
    else:
        z = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
        bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()],
                         dtype=np.int64).reshape(-1, 2)
    if (z == 0).any():
        first = int(np.flatnonzero(z == 0)[0])
        raise unknown_element(source, first, mol.GetAtomWithIdx(first).GetSymbol())
    return Molecule(source=source, sample_id=sample_id, pos=pos, z=z,
                    bond_index=both_directions(bonds[:, 0], bonds[:, 1]), props=props or {})


def molecule_from_atoms(z: np.ndarray, pos: np.ndarray, source: str, sample_id: str,
                        props: dict[str, float] | None = None) -> Molecule:
    """A Molecule from atoms alone; bonds inferred from distances and covalent radii.

    RDKit's connect-the-dots rule (`rdDetermineBonds.DetermineConnectivity`, Kim & Kim 2015):
    two atoms are bonded when closer than 1.3 x the sum of their covalent radii.
    """
    from rdkit import Chem, Geometry
    from rdkit.Chem import rdDetermineBonds

    pos = check_positions(pos, source, "atom")
    mol = Chem.RWMol()
    for atomic_num in z:
        mol.AddAtom(Chem.Atom(int(atomic_num)))
    conformer = Chem.Conformer(len(z))
    for i, (x, y, zc) in enumerate(pos):
        conformer.SetAtomPosition(i, Geometry.Point3D(float(x), float(y), float(zc)))
    conformer.Set3D(True)
    mol.AddConformer(conformer, assignId=True)
    rdDetermineBonds.DetermineConnectivity(mol)
    molecule = molecule_from_rdkit(mol, source, sample_id, props, require_3d=False)
    molecule.pos = pos   # exactly the parsed values, not a round trip through RDKit's Point3D
    return molecule
