"""One rule for every model's device: ``"auto"`` is CUDA when available, else the CPU."""

__all__ = ["resolve_device", "machine_description"]


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


def machine_description():
    """The machine this runs on, for the model card: CPU cores and model, any GPU."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{os.cpu_count()} CPU cores ({cpu})"
    try:
        import torch

        if torch.cuda.is_available():
            return text + f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text + ", no GPU"
