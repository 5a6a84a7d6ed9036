"""Step 3 of the README's tour: a stored dataset fed to a torch training loop."""
import torch
from torch.utils.data import DataLoader

from gdl_data import open_dataset
from gdl_data.loader import GeometryStream, collate_graphs, prefetch

if __name__ == "__main__":  # DataLoader workers re-import this file
    ds = open_dataset(".gdl-work/storage/shapes")   # len(ds), ds[i] -> dict of numpy arrays, .manifest, .errors
    print(len(ds), sorted(ds[0]))
    stream = GeometryStream(".gdl-work/storage/shapes", columns=["pos", "faces", "mass", "evals", "evecs"],
                            shuffle=True, seed=0)
    loader = DataLoader(stream, batch_size=4, num_workers=2, collate_fn=collate_graphs,
                        pin_memory=torch.cuda.is_available())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for epoch in range(2):
        stream.set_epoch(epoch)                      # a new deterministic order per epoch
        for batch in prefetch(loader, device):       # PyG-style: nodes concatenated, faces offset, batch, ptr
            print(epoch, tuple(batch["pos"].shape), batch["ptr"].tolist())
