"""Pure-torch networks: tensors in, tensors out (no astropy).

`lensenhance.nn.registry` names every architecture: `build_model` builds one by name and
`model_from_config` rebuilds one from its ``config`` dict; `register_architecture`
adds one. `build_sr_model` builds the residual super-resolution networks (RCAN, RDN,
SRResNet, EDSR, FSRCNN) and the interpolation baselines with their presets;
`SelfEnsemble` averages any of them over the 8 rotations/flips;
`lensenhance.nn.equivariant` holds an escnn-based equivariant FSRCNN and
`lensenhance.nn.unet` the diffusion UNet (optional dependencies, imported on first use).
`export_weights`/`load_weights` store and rebuild any registered network from a
safetensors file (format v2: task, config, normalisation, schedule in the metadata).
"""

from .base import ConfiguredModule
from .ensemble import D4, SelfEnsemble, d4_inverse, d4_self_ensemble, d4_transform
from .registry import (
    build_model,
    get_architecture,
    list_architectures,
    model_from_config,
    register_architecture,
    register_lazy_architecture,
)
from .sr import (
    BASELINES,
    EDSR,
    FSRCNN,
    OPTIONAL_ARCHITECTURES,
    RCAN,
    RDN,
    SIZES,
    SR_ARCHITECTURES,
    Interpolation,
    SRNetwork,
    SRResNet,
    build_sr_model,
    count_parameters,
)
from .weights import (
    TASKS,
    export_weights,
    load_weights,
    migrate_weights,
    read_weights_metadata,
)

__all__ = [
    "BASELINES",
    "D4",
    "EDSR",
    "FSRCNN",
    "OPTIONAL_ARCHITECTURES",
    "SIZES",
    "RCAN",
    "RDN",
    "SR_ARCHITECTURES",
    "TASKS",
    "ConfiguredModule",
    "Interpolation",
    "SRNetwork",
    "SRResNet",
    "SelfEnsemble",
    "build_model",
    "build_sr_model",
    "count_parameters",
    "d4_inverse",
    "d4_self_ensemble",
    "d4_transform",
    "export_weights",
    "get_architecture",
    "list_architectures",
    "load_weights",
    "migrate_weights",
    "model_from_config",
    "read_weights_metadata",
    "register_architecture",
    "register_lazy_architecture",
]
