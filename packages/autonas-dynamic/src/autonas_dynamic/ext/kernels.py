"""The block kernels: copy an active block out of a full-size tensor, write or add one into it, zero one.

A block is one ``(offset, size)`` pair per dimension. :class:`TorchKernels` is the pure-PyTorch
reference (slicing); :class:`CompiledKernels` runs the compiled C++/CUDA versions from ``csrc/`` and
falls back to the reference for what they do not cover (non-contiguous tensors, other dtypes,
more than six dims).
"""

from __future__ import annotations

from types import ModuleType

import torch

__all__ = ["Block", "CompiledKernels", "TorchKernels", "block_slices"]

#: ``(offset, size)`` per dimension of the full tensor.
Block = tuple[tuple[int, int], ...]

_COMPILED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_MAX_DIMS = 6


def block_slices(block: Block) -> tuple[slice, ...]:
    """The slices that select ``block``."""
    return tuple(slice(offset, offset + size) for offset, size in block)


class TorchKernels:
    """Reference block kernels made of torch slicing ops."""

    name = "torch"

    def gather(self, full: torch.Tensor, block: Block) -> torch.Tensor:
        """A contiguous copy of ``block`` of ``full``."""
        return full[block_slices(block)].contiguous()

    def store(self, full: torch.Tensor, values: torch.Tensor, block: Block, accumulate: bool) -> None:
        """Write (or, with ``accumulate``, add) ``values`` into ``block`` of ``full``."""
        target = full[block_slices(block)]
        if accumulate:
            target.add_(values)
        else:
            target.copy_(values)

    def zero(self, full: torch.Tensor, block: Block) -> None:
        """Set ``block`` of ``full`` to zero."""
        full[block_slices(block)].zero_()


class CompiledKernels(TorchKernels):
    """Block kernels from the compiled library; the reference where the library does not apply."""

    def __init__(self, library: ModuleType) -> None:
        self.library = library
        self.name = "compiled (C++ and CUDA)" if library.has_cuda() else "compiled (C++)"

    def _applies(self, full: torch.Tensor, *others: torch.Tensor) -> bool:
        if full.dtype not in _COMPILED_DTYPES or not 1 <= full.dim() <= _MAX_DIMS or not full.is_contiguous():
            return False
        if full.is_cuda and not self.library.has_cuda():
            return False
        return all(other.is_contiguous() and other.dtype == full.dtype for other in others)

    def gather(self, full: torch.Tensor, block: Block) -> torch.Tensor:
        if not self._applies(full):
            return super().gather(full, block)
        offsets, sizes = zip(*block, strict=True)
        return self.library.gather_block(full, list(offsets), list(sizes))

    def store(self, full: torch.Tensor, values: torch.Tensor, block: Block, accumulate: bool) -> None:
        if not self._applies(full, values):
            super().store(full, values, block, accumulate)
            return
        self.library.store_block(full, values, [offset for offset, _ in block], accumulate)

    def zero(self, full: torch.Tensor, block: Block) -> None:
        if not self._applies(full):
            super().zero(full, block)
            return
        offsets, sizes = zip(*block, strict=True)
        self.library.zero_block(full, list(offsets), list(sizes))
