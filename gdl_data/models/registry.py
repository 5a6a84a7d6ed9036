"""The model registry: spec names -> reference model classes, with what each reads from a batch.

A model is an `nn.Module` built as `cls(in_channels, out_channels, readout=..., **hyper)` and
called as `model(x, batch)`: `x` (N, in_channels) are the input features of the concatenated
batch, `batch` the collated dict (gdl_data.loader.collate_graphs) holding the geometry columns
listed in `requires`. It returns (N, out) node rows when `readout` is None, else (B, out).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from gdl_data.errors import SpecError, did_you_mean, unknown_name


@dataclass(frozen=True)
class ModelInfo:
    name: str
    cls: type[nn.Module]
    domain: str                      # the domain it is made for (a hint; not enforced)
    requires: tuple[str, ...]        # geometry columns it reads from the batch
    default_readout: str             # pooling to one row per sample for graph-level tasks
    node_level: bool                 # whether it can predict per node (readout=None)
    paper: str

    def hyper_parameters(self) -> dict[str, Any]:
        """Keyword arguments of the constructor (beyond the channels and readout) with defaults."""
        sig = inspect.signature(self.cls.__init__)
        skip = {"self", "in_channels", "out_channels", "readout"}
        return {k: p.default for k, p in sig.parameters.items() if k not in skip}


_MODELS: dict[str, ModelInfo] = {}


def register_model(name: str, *, domain: str, requires: tuple[str, ...], default_readout: str,
                   node_level: bool, paper: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        _MODELS[name] = ModelInfo(name, cls, domain, tuple(requires), default_readout, node_level, paper)
        return cls
    return decorator


def get_model(name: str) -> ModelInfo:
    _load_builtin_models()
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return _MODELS[name]


def list_models() -> dict[str, ModelInfo]:
    _load_builtin_models()
    return dict(_MODELS)


def build_model(name: str, in_channels: int, out_channels: int, *, node_level: bool,
                **hyper: Any) -> nn.Module:
    """Instantiate a registered model for a node-level (`readout=None`) or graph-level task."""
    info = get_model(name)
    if node_level and not info.node_level:
        raise SpecError(f"model '{name}' pools to one prediction per sample; "
                        f"use task: graph_classification or graph_regression with it")
    known = info.hyper_parameters()
    for key in hyper:
        if key not in known:
            raise SpecError(f"model '{name}' has no hyper-parameter '{key}'; {did_you_mean(key, known)}"
                            f"its hyper-parameters are: {', '.join(known)}")
    readout = None if node_level else info.default_readout
    try:
        return info.cls(in_channels, out_channels, readout=readout, **hyper)
    except (TypeError, ValueError) as exc:   # e.g. a string where a number goes
        raise SpecError(f"model '{name}' cannot be built with {hyper}: {exc}; "
                        f"its hyper-parameters and defaults are {known}") from None


def _load_builtin_models() -> None:
    import gdl_data.models  # noqa: F401  (importing the package registers the built-ins)
