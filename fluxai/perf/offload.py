"""CPU offload: keep weights in host memory and bring them to the GPU only while they compute.

Two granularities:
- `ModelOffload`: whole parts (the transformer, the VAE's encoder and decoder) take turns on
  the device; peak memory is the largest part. Inputs are moved to the device on entry and
  outputs back to where the inputs came from, so callers never see where a part ran.
- `BlockOffload`: the transformer's blocks stay in (pinned) host memory and are copied in one
  at a time; the copy of block i+1 runs on a side CUDA stream while block i computes, so the
  transfer hides behind the compute when compute is the longer of the two.

Both run the same operations on the same device as without offload: outputs are bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from fluxai.model.transformer import Flux


def _move(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple | list):
        return type(obj)(_move(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    return obj


def _first_device(obj: Any) -> torch.device | None:
    if isinstance(obj, Tensor):
        return obj.device
    if isinstance(obj, tuple | list):
        obj = list(obj)
    elif isinstance(obj, dict):
        obj = list(obj.values())
    else:
        return None
    for o in obj:
        d = _first_device(o)
        if d is not None:
            return d
    return None


class ModelOffload:
    """Parts take turns on `device`; the one that ran last stays until another is needed."""

    def __init__(self, parts: Iterable[nn.Module], device: torch.device | str,
                 storage: torch.device | str = "cpu"):
        self.device, self.storage = torch.device(device), torch.device(storage)
        self.parts = list(parts)
        self.active: nn.Module | None = None
        self._handles: list[RemovableHandle] = []
        self._caller: dict[int, torch.device] = {}
        for part in self.parts:
            part.to(self.storage)
            self._handles.append(part.register_forward_pre_hook(self._enter, with_kwargs=True))
            self._handles.append(part.register_forward_hook(self._exit))

    def _enter(self, part: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self.active is not part:
            if self.active is not None:
                self.active.to(self.storage)
            part.to(self.device)
            self.active = part
        self._caller[id(part)] = _first_device((args, kwargs)) or self.device
        return _move(args, self.device), _move(kwargs, self.device)

    def _exit(self, part: nn.Module, _args: tuple, output: Any) -> Any:
        return _move(output, self._caller.pop(id(part), self.device))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class BlockOffload:
    """The transformer's blocks live in host memory; each visits the device for its forward."""

    def __init__(self, model: Flux, device: torch.device | str, prefetch: bool = True):
        self.device = torch.device(device)
        self.blocks: list[nn.Module] = [*model.double_blocks, *model.single_blocks]
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda and prefetch else None
        # Everything but the blocks is small: it stays on the device.
        for name, child in model.named_children():
            if name not in ("double_blocks", "single_blocks"):
                child.to(self.device)
        self._host: list[list[Tensor]] = []
        for block in self.blocks:
            block.to("cpu")
            params = [*block.parameters(), *block.buffers()]
            if cuda:  # pinned memory: asynchronous copies, and at full bus speed
                for p in params:
                    p.data = p.data.pin_memory()
            self._host.append([p.data for p in params])
        self._pending: dict[int, torch.cuda.Event | None] = {}
        self._handles: list[RemovableHandle] = []
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(
                lambda _m, _a, i=i: self._before(i)))
            self._handles.append(block.register_forward_hook(
                lambda _m, _a, _o, i=i: self._after(i)))

    def _params(self, i: int) -> list[Tensor]:
        block = self.blocks[i]
        return [*block.parameters(), *block.buffers()]

    def _load(self, i: int) -> None:
        """Start copying block i to the device (on the side stream when there is one)."""
        if i in self._pending:
            return
        params = self._params(i)
        if self.stream is None:
            for p, host in zip(params, self._host[i], strict=True):
                p.data = host.to(self.device)
            self._pending[i] = None
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for p, host in zip(params, self._host[i], strict=True):
                p.data = host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self._pending[i] = event

    def _before(self, i: int) -> None:
        self._load(i)
        event = self._pending[i]
        if event is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(event)
            # The copies were allocated on the side stream: tell the allocator the compute
            # stream uses them, so their memory is not handed out again before it is done.
            for p in self._params(i):
                p.data.record_stream(compute)
        if self.stream is not None:
            self._load((i + 1) % len(self.blocks))

    def _after(self, i: int) -> None:
        for p, host in zip(self._params(i), self._host[i], strict=True):
            p.data = host
        self._pending.pop(i, None)

    def remove(self) -> None:
        """Detach the hooks; the blocks stay in host memory until moved."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for i in list(self._pending):
            self._after(i)
