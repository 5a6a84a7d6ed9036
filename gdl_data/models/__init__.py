"""Reference geometric deep learning models, one module each, registered by name for training specs.

| name | domain | reads from the batch | paper |
| --- | --- | --- | --- |
| `diffusion_net` | mesh | mass, evals, evecs, grad_x, grad_y | Sharp et al., ACM TOG 2022 |
| `gcn` | graph | edge_index, evecs (Laplacian positional encodings) | Kipf & Welling 2017; Dwivedi et al. 2023 |
| `deepsphere` | sphere | edge_index (HEALPix neighbours), nside | Perraudin et al. 2019 |
| `schnet` | molecule | z, edge_index, edge_dist (radius graph) | Schütt et al. 2017 |

`build_model(name, in_channels, out_channels, node_level=..., **hyper)`; see registry.py for the
calling convention `model(x, batch)`.
"""
from gdl_data.models.registry import ModelInfo, build_model, get_model, list_models, register_model  # noqa: F401
from gdl_data.models import deepsphere, diffusion_net, gcn, schnet  # noqa: F401,E402  (register the built-ins)
