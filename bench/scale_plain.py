"""The plain script a user would write instead of `gdl preprocess` (issue 10's baseline).

    python -m bench.scale_plain MOLECULES.sdf OUT_FOLDER

One process, one loop: RDKit reads each record, scipy's cKDTree finds the pairs within 5 Å,
numpy's eigh gives the 8 smallest eigenpairs of the bond graph's Laplacian, np.savez writes one
file per molecule. Prints the molecule count.
"""
import os
import sys

import numpy as np
from rdkit import Chem
from scipy.spatial import cKDTree


def main(sdf: str, out: str) -> int:
    os.makedirs(out, exist_ok=True)
    count = 0
    for mol in Chem.SDMolSupplier(sdf, removeHs=False):
        pos = mol.GetConformer().GetPositions()
        z = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
        pairs = cKDTree(pos).query_pairs(5.0, output_type="ndarray")
        edge_index = np.concatenate([pairs, pairs[:, ::-1]]).T
        bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]).reshape(-1, 2)
        adjacency = np.zeros((len(z), len(z)))
        adjacency[bonds[:, 0], bonds[:, 1]] = adjacency[bonds[:, 1], bonds[:, 0]] = 1
        evals, evecs = np.linalg.eigh(np.diag(adjacency.sum(1)) - adjacency)
        np.savez(os.path.join(out, f"{count}.npz"), pos=pos, z=z, edge_index=edge_index,
                 evals=evals[:8], evecs=evecs[:, :8])
        count += 1
    return count


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
