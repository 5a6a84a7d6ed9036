"""MosaicML `streaming` on the loader benchmark's samples: `MDSWriter` converts, `StreamingDataset` reads.

    python -m bench.loader_mosaic    # once: streaming and what it imports, into SITE

Why a folder of its own (SITE, put first on sys.path only by the processes that import this
module) and not the `bench` extra: `mosaicml-streaming` 0.13.0 declares numpy<2.2 (this project
runs numpy 2.4) and torchvision, and `import streaming` imports torchvision
(streaming/__init__.py -> streaming/vision/base.py) and transformers
(streaming/base/dataloader.py). The only torchvision pip resolves with torch==2.13.0 is 0.28.0, a
CUDA build whose `_C.so` links libc10_cuda.so / libtorch_cuda.so, which torch 2.13.0+cpu lacks:
the extension does not load, and `import torchvision` then fails in
torchvision/_meta_registrations.py, which registers fake kernels for `torchvision::nms` and
`torchvision::qnms` whether or not the extension loaded ("operator torchvision::nms does not
exist"). Installed into the shared environment, that torchvision would also break LitData, which
imports torchvision when it finds it installed. So everything goes into SITE with --no-deps
(numpy stays the project's), and, where the extension cannot load, `_declare_torchvision_ops`
declares those two operators' schemas (copied from torchvision's csrc/ops/nms.cpp and
csrc/ops/quantized/cpu/qnms_kernel.cpp) so that torchvision's Python parts import. No torchvision
operator runs here: streaming uses only `VisionDataset` and `to_tensor` from it, in its vision
datasets, which this benchmark does not use. streaming's own code is used unchanged.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

SITE = Path(os.environ.get("GDL_MOSAIC_SITE", Path(__file__).resolve().parents[1] / ".gdl-work" / "mosaic-site"))
# streaming 0.13.0 and what `import streaming` imports that the project does not already have;
# versions are the newest that satisfy streaming's pins (transformers<5) and torch==2.13.0.
PACKAGES = ("mosaicml-streaming==0.13.0", "torchvision==0.28.0", "transformers==4.57.6",
            "huggingface_hub==0.36.2", "tokenizers==0.22.2", "safetensors==0.8.0", "hf-xet==1.8.0",
            "python-snappy==0.7.3", "zstd==1.5.7.2", "catalogue==2.0.10")
COLUMNS = {"pos": "ndarray:float32", "faces": "ndarray:int64", "evecs": "ndarray:float32",
           "mass": "ndarray:float32"}


def install() -> None:
    """pip-install PACKAGES into SITE without their dependencies (so torch and numpy stay untouched)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(SITE),
                    *PACKAGES], check=True)


def _declare_torchvision_ops() -> None:
    """Declare torchvision's nms/qnms schemas when its C extension cannot load (module docstring)."""
    import importlib.util
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"torchvision is not installed in {SITE}: python -m bench.loader_mosaic")
    try:
        torch.ops.load_library(str(Path(spec.submodule_search_locations[0]) / "_C.so"))
        return   # a build that loads registers the operators itself
    except OSError:
        pass
    global _TORCHVISION_LIB   # the schemas live as long as this library object
    _TORCHVISION_LIB = torch.library.Library("torchvision", "DEF")
    _TORCHVISION_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


if __name__ == "__main__":
    install()
    raise SystemExit(0)
if str(SITE) not in sys.path:
    sys.path.insert(0, str(SITE))
_declare_torchvision_ops()
from streaming import MDSWriter, StreamingDataset  # noqa: E402
from streaming.base.util import clean_stale_shared_memory  # noqa: E402


def write_mds(root: Path, samples: int, vertices: int, k: int, chunk_bytes: int) -> float:
    """streaming's MDSWriter over the same samples (uncompressed, shards of `chunk_bytes`); seconds."""
    from bench.loader_formats import mesh_arrays
    out = root / "mds"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with MDSWriter(out=str(out), columns=COLUMNS, size_limit=chunk_bytes) as writer:
        for i in range(samples):
            writer.write(mesh_arrays(i, vertices, k))
    return time.perf_counter() - start


class MdsMeshes(StreamingDataset):
    """StreamingDataset yielding tensors, subclassed as streaming's documentation shows."""

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(idx)
        return {name: torch.from_numpy(sample[name]) for name in COLUMNS}


def mds_dataset(root: Path, remote: str | None, cache: Path, batch_size: int) -> MdsMeshes:
    """Local MDS shards, or (with `remote`, s3://...) those downloaded into `cache`, shuffled."""
    clean_stale_shared_memory()   # as streaming advises: leftovers of an earlier process
    shutil.rmtree(cache, ignore_errors=True)   # a new process starts cold, as ours does
    if remote is None:
        return MdsMeshes(local=str(root / "mds"), shuffle=True, shuffle_seed=0, batch_size=batch_size)
    os.environ["S3_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]   # streaming's boto3 reads this
    return MdsMeshes(remote=remote, local=str(cache), shuffle=True, shuffle_seed=0, batch_size=batch_size)
