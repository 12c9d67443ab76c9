"""One rule for every model's device: ``"auto"`` is CUDA when available, else the CPU."""

__all__ = ["resolve_device"]


def resolve_device(device):
    """The `torch.device` for ``device``: None or ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Raises
    ------
    ValueError
        For a name torch does not know, or CUDA asked for where there is none.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or "
                         f"'cuda:N' ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {str(device)!r}: use 'auto', 'cpu' or 'cuda'")
    return device
