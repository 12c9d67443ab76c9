"""Pure-torch networks: tensors ``(batch, 1, y, x)`` in, tensors out (no astropy).

`build_sr_model` builds the residual super-resolution networks (RCAN, RDN, SRResNet,
EDSR, FSRCNN) and the interpolation baselines by name; `SelfEnsemble` averages any of
them over the 8 rotations/flips; `lensenhance.nn.equivariant` holds an escnn-based
equivariant FSRCNN (optional dependency); `export_weights`/`load_sr_weights` store
and rebuild a network from a safetensors file.
"""

from .ensemble import D4, SelfEnsemble, d4_inverse, d4_self_ensemble, d4_transform
from .sr import (
    BASELINES,
    EDSR,
    FSRCNN,
    OPTIONAL_ARCHITECTURES,
    PRESETS,
    RCAN,
    RDN,
    SR_ARCHITECTURES,
    Interpolation,
    SRNetwork,
    SRResNet,
    build_sr_model,
    count_parameters,
    model_from_config,
)
from .weights import export_weights, load_sr_weights, read_weights_metadata

__all__ = [
    "BASELINES",
    "D4",
    "EDSR",
    "FSRCNN",
    "OPTIONAL_ARCHITECTURES",
    "PRESETS",
    "RCAN",
    "RDN",
    "SR_ARCHITECTURES",
    "Interpolation",
    "SRNetwork",
    "SRResNet",
    "SelfEnsemble",
    "build_sr_model",
    "count_parameters",
    "d4_inverse",
    "d4_self_ensemble",
    "d4_transform",
    "export_weights",
    "load_sr_weights",
    "model_from_config",
    "read_weights_metadata",
]
