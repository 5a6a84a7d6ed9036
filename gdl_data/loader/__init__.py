"""Loading stored datasets into torch training: datasets, batching, GPU feed, PyG interop.

    from torch.utils.data import DataLoader
    from gdl_data.loader import GeometryStream, collate_graphs, prefetch

    stream = GeometryStream("storage/shapes", columns=["pos", "faces", "evecs", "mass"],
                            shuffle=True, seed=0, cache_dir="~/.cache/gdl-data/decoded")
    loader = DataLoader(stream, batch_size=16, num_workers=2, collate_fn=collate_graphs,
                        pin_memory=True, persistent_workers=True)
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        for batch in prefetch(loader, "cuda"):
            ...

Modules: row_groups (the unit of reading), tensors (Arrow -> tensors without copies),
decoded_cache (row groups kept as memory-mapped Arrow files between epochs), shard_cache (whole
shards of a remote dataset on local disk, bounded, prefetched), partition (which worker of
which rank reads what), map_dataset / stream_dataset (the two torch datasets), stream_loader
(a stream's batches from reading threads instead of DataLoader's worker processes),
stream_state (mid-epoch resume of the stream), sampler (resumable, rank-independent global batches),
collate / padded (batching variable-size geometry), device (pinning and copies), pyg
(torch_geometric interop). Measured against per-sample caches in bench/RESULTS.md, "Loader".
"""
from gdl_data.loader.collate import collate_graphs  # noqa: F401
from gdl_data.loader.device import pin, prefetch, to_device  # noqa: F401
from gdl_data.loader.map_dataset import GeometryDataset  # noqa: F401
from gdl_data.loader.padded import collate_padded  # noqa: F401
from gdl_data.loader.pyg import to_pyg  # noqa: F401
from gdl_data.loader.sampler import GlobalBatchSampler  # noqa: F401
from gdl_data.loader.stream_dataset import GeometryStream  # noqa: F401
from gdl_data.loader.stream_loader import StreamLoader  # noqa: F401
