"""GCN with Laplacian-eigenvector positional encodings, for graphs.

Graph convolutions as in Kipf & Welling (*Semi-Supervised Classification with Graph
Convolutional Networks*, ICLR 2017): H' = σ(D̂^-1/2 (A + I) D̂^-1/2 H W). Message passing alone
cannot tell apart nodes with the same neighbourhood structure, so each node's input is its
features concatenated with the first `pe_dim` non-trivial eigenvectors of the graph Laplacian
(the precomputed `evecs`), as in Dwivedi et al. (*Benchmarking Graph Neural Networks*, JMLR
2023). Eigenvectors have no canonical sign, so during training every sample's encodings are
multiplied by random signs per eigenvector, which teaches the network not to rely on them
(`sign_flip`; turn it off to classify the nodes of one fixed graph, where the stored signs
are the same at training and test time and a node's side of the Fiedler vector is the signal).
Reads `edge_index` (2, E) and `evecs` (N, k) from the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from gdl_data.models.registry import register_model
from gdl_data.models.segment import propagate, readout, symmetric_norm


def laplacian_encoding(evecs: torch.Tensor, batch: torch.Tensor, num_samples: int, pe_dim: int, *,
                       random_signs: bool) -> torch.Tensor:
    """Eigenvectors 1..pe_dim (the constant 0-th skipped), zero-padded if fewer were stored."""
    pe = evecs[:, 1:1 + pe_dim].float()
    if pe.shape[1] < pe_dim:
        pe = torch.cat([pe, pe.new_zeros(pe.shape[0], pe_dim - pe.shape[1])], dim=1)
    if random_signs:
        signs = torch.randint(0, 2, (num_samples, pe_dim), device=pe.device) * 2 - 1
        pe = pe * signs[batch].to(pe.dtype)
    return pe


class GCNConv(nn.Module):
    """One graph convolution with self loops and symmetric normalisation."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        return propagate(self.linear(x), edge_index, norm)


@register_model("gcn", domain="graph", requires=("edge_index", "evecs"), default_readout="mean",
                node_level=True, paper="Kipf & Welling, ICLR 2017; Dwivedi et al., JMLR 2023")
class GCN(nn.Module):
    """in_channels, out_channels: node features and outputs; readout: None (per node) or 'mean';
    hidden=32 channels; layers=2 graph convolutions; pe_dim=4 Laplacian eigenvectors appended to
    the input (0 disables them); sign_flip=True random encoding signs while training; dropout=0.5
    before each convolution."""

    def __init__(self, in_channels: int, out_channels: int, readout: str | None = "mean", *,
                 hidden: int = 32, layers: int = 2, pe_dim: int = 4, sign_flip: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        if layers < 1:
            raise ValueError(f"gcn needs layers >= 1, got {layers}")
        self.readout, self.pe_dim, self.sign_flip = readout, pe_dim, sign_flip
        sizes = [in_channels + pe_dim] + [hidden] * (layers - 1) + [out_channels]
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        num_nodes, num_samples = x.shape[0], batch["ptr"].numel() - 1
        if self.pe_dim:
            pe = laplacian_encoding(batch["evecs"], batch["batch"], num_samples, self.pe_dim,
                                    random_signs=self.sign_flip and self.training)
            x = torch.cat([x, pe.to(x.dtype)], dim=1)
        loops = torch.arange(num_nodes, device=x.device).expand(2, -1)
        edge_index = torch.cat([batch["edge_index"], loops], dim=1)
        norm = symmetric_norm(edge_index, num_nodes)
        for i, conv in enumerate(self.convs):
            x = conv(self.dropout(x), edge_index, norm)
            if i < len(self.convs) - 1:
                x = torch.relu(x)
        return readout(x, batch, self.readout)
