"""Geometric operators. Importing this package registers every built-in op by its spec name."""
from gdl_data.ops.registry import Op, get_op, list_ops, register_op  # noqa: F401
from gdl_data.ops import eigenbasis, geodesics  # noqa: F401,E402  (registers "eigenbasis", "geodesics")
from gdl_data.ops import frames, neighborhoods, gradients  # noqa: F401,E402  (registers "frames", "neighborhoods", "gradients")
from gdl_data.ops import estimates  # noqa: F401,E402  (registers the ops' memory estimates)
