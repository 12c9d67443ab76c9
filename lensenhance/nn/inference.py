"""Exact rewrites of a trained network that make its inference faster on a CPU.

Each rewrite computes the same function (to float rounding) with operations that
oneDNN runs faster; `inference_copy` applies them all. ``lensenhance benchmark speed
--part enhance`` measures the effect (megapixels/s and the share of the CPU's
convolution peak of every shipped model).

- `fold_batch_norms`: a batch norm after a convolution is folded into its weights.
- `transposed_as_subpixel`: a strided transposed convolution (FSRCNN's deconvolution)
  becomes a convolution on the low-resolution grid and a pixel shuffle (Shi et al. 2016):
  PyTorch's CPU transposed convolution runs at a tenth of the speed of a convolution.
- `to_channels_last`: weights in the channels_last memory format, on which oneDNN's
  convolutions run 1.3-2x faster than on NCHW.
- `dense_blocks_in_place`: RDN's dense blocks concatenate their features into two
  buffers used in turn and kept for the whole forward pass, instead of a new tensor per
  layer: on a CPU the page faults of a fresh allocation cost more than the copy (a third
  of RDN's time). The two buffers hold no more than a layer's input and output did.
"""

from __future__ import annotations

import copy
import threading

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["inference_copy", "fold_batch_norms", "transposed_as_subpixel", "to_channels_last",
           "dense_blocks_in_place", "SubPixelTransposedConv"]


def inference_copy(module):
    """``module`` (in eval mode) with every rewrite of this module applied.

    A copy is made where anything changes; the module given is never modified.
    """
    return dense_blocks_in_place(
        to_channels_last(transposed_as_subpixel(fold_batch_norms(module))))


def fold_batch_norms(module):
    """An eval-mode network with each BatchNorm2d folded into the Conv2d before it.

    The same function in one pass over the features instead of two: on a CPU a batch
    norm is a memory-bound pass of its own (a third of SRResNet's inference time). The
    folding is `torch.nn.utils.fusion.fuse_conv_bn_eval`'s; a network with nothing to fold
    is returned as it is, any other is copied first, so the caller's module is unchanged.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    >>> folded = fold_batch_norms(net)
    >>> type(folded[1]).__name__, type(net[1]).__name__
    ('Identity', 'BatchNorm2d')
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def pairs(root):
        """(Sequential, conv's name, norm's name) of each conv directly followed by a norm."""
        for parent in root.modules():
            if isinstance(parent, nn.Sequential):
                names = list(parent._modules)
                for first, second in zip(names, names[1:]):
                    conv, norm = parent._modules[first], parent._modules[second]
                    if (type(conv) is nn.Conv2d and type(norm) is nn.BatchNorm2d
                            and norm.track_running_stats):
                        yield parent, first, second

    if module.training or next(pairs(module), None) is None:
        return module
    module = copy.deepcopy(module)
    for parent, first, second in list(pairs(module)):
        parent._modules[first] = fuse_conv_bn_eval(parent._modules[first],
                                                   parent._modules[second])
        parent._modules[second] = nn.Identity()
    return module


class SubPixelTransposedConv(nn.Module):
    """A strided ConvTranspose2d computed as a Conv2d and a pixel shuffle.

    For stride ``s``, output pixel ``s*m + r`` of a transposed convolution only sees the
    kernel taps ``k = s*t + (r + p) mod s``: each of the ``s**2`` output phases is an
    ordinary correlation of the input with a sub-kernel. The sub-kernels, zero-padded to
    one common window, are the output channels of one convolution on the input grid, and
    the pixel shuffle interleaves the phases. Exact (to float rounding) when the
    transposed convolution's output is ``s`` times its input
    (``kernel + output_padding - stride - 2 * padding == 0``, true of FSRCNN's).

    Parameters
    ----------
    layer : torch.nn.ConvTranspose2d
        Square stride, no groups, no dilation, zero padding mode.
    """

    def __init__(self, layer):
        super().__init__()
        if not convertible(layer):
            raise ValueError(f"cannot compute {layer} as a sub-pixel convolution")
        stride, padding = layer.stride[0], layer.padding
        weight = layer.weight.detach()  # (in, out, ky, kx)
        taps = [_phase_taps(layer.kernel_size[axis], stride, padding[axis]) for axis in (0, 1)]
        reach = [max(abs(j) for phase in axis for j, _ in phase) for axis in taps]
        n_in, n_out = weight.shape[:2]
        kernel = weight.new_zeros(n_out, stride, stride, n_in, 2 * reach[0] + 1,
                                  2 * reach[1] + 1)
        for ry, phase_y in enumerate(taps[0]):
            for rx, phase_x in enumerate(taps[1]):
                for jy, ky in phase_y:
                    for jx, kx in phase_x:
                        kernel[:, ry, rx, :, jy + reach[0], jx + reach[1]] = weight[:, :, ky, kx].T
        self.stride = stride
        self.padding = tuple(reach)
        self.weight = nn.Parameter(kernel.reshape(n_out * stride**2, n_in, *kernel.shape[-2:]),
                                   requires_grad=False)
        bias = layer.bias.detach() if layer.bias is not None else weight.new_zeros(n_out)
        self.bias = nn.Parameter(bias.repeat_interleave(stride**2), requires_grad=False)

    def forward(self, x):
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=self.padding),
                               self.stride)


def _phase_taps(kernel, stride, padding):
    """For each output phase r: (input offset j, kernel tap k) pairs of y[s m + r].

    ``y[s*m + r] = sum x[m + j] * w[k]`` over the pairs, from the transposed
    convolution's ``o = s*i - padding + k``.
    """
    phases = []
    for r in range(stride):
        a, b = divmod(r + padding, stride)
        phases.append([(a - t, stride * t + b) for t in range(-(-(kernel - b) // stride))])
    return phases


def convertible(layer):
    """True for a ConvTranspose2d that `SubPixelTransposedConv` computes exactly."""
    return (type(layer) is nn.ConvTranspose2d and layer.groups == 1
            and layer.dilation == (1, 1) and layer.padding_mode == "zeros"
            and layer.stride[0] == layer.stride[1] > 1
            and all(layer.kernel_size[a] + layer.output_padding[a] - layer.stride[a]
                    - 2 * layer.padding[a] == 0 for a in (0, 1)))


def transposed_as_subpixel(module):
    """``module`` with each convertible ConvTranspose2d replaced by a sub-pixel convolution.

    Returned as it is when there is none; otherwise a copy.

    Examples
    --------
    >>> import torch
    >>> deconv = torch.nn.ConvTranspose2d(8, 1, 9, stride=2, padding=4, output_padding=1)
    >>> x = torch.randn(1, 8, 16, 16)
    >>> fast = transposed_as_subpixel(deconv)
    >>> torch.allclose(fast(x), deconv(x), atol=1e-5)
    True
    """
    if convertible(module):
        return SubPixelTransposedConv(module)
    if not any(convertible(child) for child in module.modules()):
        return module
    module = copy.deepcopy(module)
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if convertible(child):
                setattr(parent, name, SubPixelTransposedConv(child))
    return module


def to_channels_last(module):
    """``module`` with its 4-D weights in the channels_last memory format (a copy if needed)."""
    weights = [p for p in module.parameters() if p.dim() == 4]
    if all(p.is_contiguous(memory_format=torch.channels_last) for p in weights):
        return module
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


class _DenseBlockInPlace(nn.Module):
    """A `~lensenhance.nn.blocks.ResidualDenseBlock` whose concatenations reuse buffers."""

    def __init__(self, block, workspace):
        super().__init__()
        *layers, fusion = block.body  # the dense layers, then the 1x1 local fusion
        self.layers = nn.ModuleList(layers)
        self.fusion = fusion
        self.res_scale = block.res_scale
        self.workspace = workspace  # a plain dict shared by the blocks of one network

    def forward(self, x):
        features = x
        for i, layer in enumerate(self.layers):
            new = F.relu(layer.conv(features))
            if torch.is_grad_enabled():  # cat(out=) does not record gradients
                features = torch.cat([features, new], dim=1)
                continue
            batch, channels, height, width = features.shape
            channels += new.shape[1]
            # Two buffers in turn: layer i reads the one layer i - 1 wrote. Per thread:
            # dask may run tiles through the same module in several threads.
            key = (threading.get_ident(), i % 2, x.dtype, x.device)
            size = batch * height * width * channels
            buffer = self.workspace.get(key)
            if buffer is None or buffer.numel() < size:
                buffer = self.workspace[key] = torch.empty(size, dtype=x.dtype,
                                                           device=x.device)
            # (B, H, W, C) contiguous, seen as (B, C, H, W): channels_last contiguous
            out = buffer[:size].view(batch, height, width, channels).permute(0, 3, 1, 2)
            features = torch.cat([features, new], dim=1, out=out)
        out = self.fusion(features)
        return x + (out * self.res_scale if self.res_scale != 1.0 else out)


class _ReleasesWorkspace(nn.Module):
    """Runs a network and then frees the buffers its dense blocks kept in this thread."""

    def __init__(self, network, workspace):
        super().__init__()
        self.network = network
        self.workspace = workspace

    def forward(self, *args):
        try:
            return self.network(*args)
        finally:
            thread = threading.get_ident()
            for key in [key for key in list(self.workspace) if key[0] == thread]:
                del self.workspace[key]


def dense_blocks_in_place(module):
    """``module`` with RDN's dense blocks concatenating into reused buffers (a copy).

    The buffers live for one forward pass; returned as it is when it has no dense block.
    """
    from .blocks import ResidualDenseBlock

    if not any(isinstance(m, ResidualDenseBlock) for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    workspace = {}
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, ResidualDenseBlock):
                setattr(parent, name, _DenseBlockInPlace(child, workspace))
    return _ReleasesWorkspace(module, workspace)
