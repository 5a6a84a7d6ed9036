"""Geometric operators. Importing this package registers every built-in op by its spec name."""
from gdl_data.ops.registry import Op, get_op, list_ops, register_op  # noqa: F401
from gdl_data.ops import eigenbasis, geodesics  # noqa: F401,E402  (registers "eigenbasis", "geodesics")
from gdl_data.ops import frames, neighborhoods, gradients  # noqa: F401,E402  (registers "frames", "neighborhoods", "gradients")
from gdl_data.ops import hks  # noqa: F401,E402  (registers "hks"; after eigenbasis, which it reads)

# The parameters that reproduce DiffusionNet's operators (its geometry.py, `compute_operators`
# and `compute_hks_autoscale`), op by op; README, "DiffusionNet parity", says what each changes.
DIFFUSIONNET_PARAMS = {
    "eigenbasis": {"laplacian": "cotan", "shift": 1e-8},
    "frames": {"weighting": "uniform", "normal_eps": 1e-6, "pca_centre": "point"},
    "gradients": {"regularization": 1e-5, "regularization_scale": "absolute"},
    "hks": {"scale": "diffusionnet"},
}

from gdl_data.ops import estimates  # noqa: F401,E402  (registers the ops' memory estimates)
