"""One training loop for every model family: checkpoints, EMA, DDP, exact resume, progress.

A *task* object (`lensenhance.training.sr.SRTask`,
`lensenhance.training.diffusion.DiffusionTask`) supplies what differs between families:
the batches, the loss and the validation. `train` owns the rest: AdamW with a cosine
schedule, an exponential moving average of the weights, gradient clipping, checkpoints
that resume to the exact state of an uninterrupted run, DistributedDataParallel under
``torchrun`` and the export of the EMA weights.

Reproducibility: at every step the batch is drawn with a fresh numpy Generator seeded by
``(seed, rank, step)``, so a resumed run sees exactly the batches of an uninterrupted one
and DDP ranks see different batches. Resuming checks the whole run configuration (the
network, the task's data and loss, the optimiser, the number of steps and the batch) and
refuses a mismatch, naming what changed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import save as safetensors_save
from torch import nn

from .._atomic import atomic_write_bytes
from .._validation import check_int
from ..nn.weights import export_weights, portable_state_dict
from .checkpoints import (
    CHECKPOINT_FORMAT,
    all_checkpoints,
    checkpoint_files,
    join_tensors,
    json_bytes,
    latest_checkpoint,
    prefixed,
    read_checkpoint,
    split_tensors,
    unprefixed,
)

__all__ = ["Task", "ExponentialMovingAverage", "train", "WEIGHTS_FILE", "HISTORY_FILE"]

WEIGHTS_FILE = "weights.safetensors"
HISTORY_FILE = "history.json"


class Task(Protocol):
    """What a model family supplies to `train`.

    ``name`` names the family (``"sr"``, ``"diffusion"``); ``config()`` returns the
    JSON-ready description of the data and the loss (compared when resuming);
    ``batch(batch_size, rng)`` draws one batch (a tuple of tensors) using only ``rng``;
    ``loss(net, batch)`` returns the scalar loss and a dict of float terms;
    ``validate(net, device, batch_size)`` returns a dict of figures (or None when the task
    has no validation data); ``weights_metadata()`` returns what the exported weights file
    must carry besides the network config (task, normalisation, schedule).
    """

    name: str

    def config(self) -> dict: ...

    def batch(self, batch_size: int, rng: np.random.Generator) -> tuple: ...

    def loss(self, net: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]: ...

    def validate(self, net: nn.Module, device, batch_size: int) -> dict | None: ...

    def weights_metadata(self) -> dict: ...


class ExponentialMovingAverage:
    """Exponential moving average of a network's weights (a frozen copy).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
    that short runs are not dominated by the random initial weights. Buffers (batch
    norm statistics) are copied, not averaged.

    Parameters
    ----------
    model : torch.nn.Module
        The network being trained.
    decay : float, optional
        Asymptotic decay per update (0 follows the model exactly).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = float(decay)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights of ``model``."""
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for average, param in zip(self.module.parameters(), model.parameters()):
            average.lerp_(param.detach(), 1 - decay)
        for average, buffer in zip(self.module.buffers(), model.buffers()):
            average.copy_(buffer)

    def __repr__(self) -> str:
        return (f"ExponentialMovingAverage({type(self.module).__name__}, decay={self.decay}, "
                f"updates={self.num_updates})")




class _Distributed:
    """Process-group bookkeeping: a no-op unless launched with ``WORLD_SIZE > 1``."""

    def __init__(self, device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        self.created = False
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank if self.world_size > 1 else 0)
        self.device = device
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
            if device.type == "cuda":
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
                self.created = True
            self.rank = dist.get_rank()
            self.world_size = dist.get_world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _cosine_factor(steps: int, floor: float = 0.01):
    """Closed-form cosine decay from 1 to ``floor`` over ``steps`` (a LambdaLR factor)."""

    def factor(step: int) -> float:
        progress = min(step, steps) / steps
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


# Keys of the run configuration that may differ on resume (they change no result).
_RESUMABLE_KEYS = ("progress",)


def _config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two nested run configurations."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        if key in _RESUMABLE_KEYS:
            continue
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
                             and list(a) == list(b)):
            differences.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return differences


def train(net: nn.Module, task: Task, *, steps: int, out_dir, batch_size: int = 16,
          lr: float = 2e-4, weight_decay: float = 1e-4, ema_decay: float = 0.999,
          grad_clip: float | None = 1.0, val_every: int = 500, checkpoint_every: int = 1000,
          log_every: int = 10, resume: bool = False, overwrite: bool = False, seed: int = 0,
          progress: bool = True, device=None, metadata: dict | None = None,
          extra_config: dict | None = None, max_steps: int | None = None) -> dict:
    """Train ``net`` on ``task`` and export its EMA weights to ``out_dir``.

    Parameters
    ----------
    net : torch.nn.Module
        A network with a ``config`` dict (every `lensenhance.nn` model).
    task : Task
        Batches, loss and validation of the model family.
    steps : int
        Total optimisation steps (the length of the cosine schedule).
    out_dir : str or path-like
        Folder for checkpoints, ``weights.safetensors`` and ``history.json``.
    batch_size : int, optional
        Samples per step (per rank under torchrun).
    lr, weight_decay : float, optional
        AdamW learning rate (cosine-decayed to 1 % of it) and weight decay.
    ema_decay : float, optional
        Decay of the EMA of the weights; the EMA weights are validated and exported.
    grad_clip : float or None, optional
        Maximum gradient norm (None or 0: no clipping).
    val_every, checkpoint_every, log_every : int, optional
        Validate, checkpoint and record the mean training loss every this many steps
        (and at the end).
    resume : bool, optional
        Continue from the latest checkpoint in ``out_dir``; start afresh if none.
    overwrite : bool, optional
        Start afresh even if ``out_dir`` holds checkpoints (they are deleted).
    seed : int, optional
        Seeds the initial weights and, with rank and step, every batch.
    progress : bool, optional
        Show a tqdm progress bar (rank 0 only).
    device : str or torch.device, optional
        Default: CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU.
    metadata : dict, optional
        Extra metadata for the exported weights (e.g. the training command).
    extra_config : dict, optional
        More of the run configuration to record and check on resume.
    max_steps : int, optional
        Stop after this step (checkpointed) without finishing the schedule: a session's
        share of a long run. The weights exported then are those of this step.

    Returns
    -------
    dict
        The history: ``train`` (step, loss terms, learning rate), ``val`` (step, figures),
        ``wall_time_s``, ``step``, ``world_size``, ``config`` and the paths of ``weights``
        and ``checkpoint``.
    """
    steps = check_int(steps, "steps")
    batch_size = check_int(batch_size, "batch_size")
    val_every = check_int(val_every, "val_every")
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every")
    log_every = check_int(log_every, "log_every")
    seed = check_int(seed, "seed", 0)
    stop = steps if max_steps is None else min(steps, check_int(max_steps, "max_steps"))
    if not (isinstance(net, nn.Module) and isinstance(getattr(net, "config", None), dict)):
        raise TypeError("net must be a lensenhance.nn network with a config dict, got "
                        f"{type(net).__name__}")
    out_dir = Path(out_dir)
    ctx = _Distributed(device)
    try:
        existing = latest_checkpoint(out_dir)
        if existing is not None and not resume and not overwrite:
            raise FileExistsError(f"{out_dir} already holds a checkpoint ({existing.name}); "
                                  "pass resume=True to continue or overwrite=True to restart")
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            if existing is not None and not resume:
                for _, old in all_checkpoints(out_dir):
                    old.with_suffix(".safetensors").unlink()
                    old.unlink()
        ctx.barrier()
        args = {"task": task.name, "data": task.config(), "steps": steps,
                "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                "ema_decay": ema_decay, "grad_clip": grad_clip, "seed": seed,
                "world_size": ctx.world_size, **(extra_config or {})}
        trainer = _Trainer(net, task, steps=steps, out_dir=out_dir, batch_size=batch_size,
                           lr=lr, weight_decay=weight_decay, ema_decay=ema_decay,
                           grad_clip=grad_clip, seed=seed, ctx=ctx, args=args)
        if resume and latest_checkpoint(out_dir) is not None:
            trainer.restore(latest_checkpoint(out_dir))
        with _terminate_as_interrupt():
            return trainer.run(stop=stop, val_every=val_every,
                               checkpoint_every=checkpoint_every, log_every=log_every,
                               progress=progress, metadata=metadata)
    finally:
        ctx.close()


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Turn SIGTERM (and SIGINT, which background jobs ignore) into KeyboardInterrupt.

    A training job stopped with ``kill`` then checkpoints its last step before it exits,
    as it does on Ctrl-C; nothing is lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Trainer:
    """State and steps of one `train` run (see there)."""

    def __init__(self, net, task, *, steps, out_dir, batch_size, lr, weight_decay,
                 ema_decay, grad_clip, seed, ctx, args):
        self.ctx = ctx
        self.device = ctx.device
        self.task = task
        self.raw = net.to(self.device).train()
        self.net = ctx.wrap(self.raw)
        self.ema = ExponentialMovingAverage(self.raw, ema_decay)
        self.optimizer = torch.optim.AdamW(self.raw.parameters(), lr=lr,
                                           weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           _cosine_factor(steps))
        self.steps, self.out_dir, self.batch_size = steps, out_dir, batch_size
        self.grad_clip, self.seed, self.args = grad_clip, seed, args
        self.step = 0
        self.history = {"train": [], "val": []}
        self.window = {"count": 0, "sums": {}}
        self.wall_time = 0.0
        self.checkpoint = None

    # -- checkpoints
    def save(self) -> Path:
        tensors = {}
        tensors.update(prefixed(portable_state_dict(self.raw), "model"))
        tensors.update(prefixed(portable_state_dict(self.ema.module), "ema"))
        rng = {"torch": split_tensors(torch.get_rng_state(), "rng.torch", tensors)}
        if self.device.type == "cuda":
            rng["cuda"] = split_tensors(torch.cuda.get_rng_state(self.device), "rng.cuda",
                                        tensors)
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": 2,
            "step": self.step,
            "config": self.raw.config,
            "args": self.args,
            "optimizer": split_tensors(self.optimizer.state_dict(), "optimizer", tensors),
            "scheduler": split_tensors(self.scheduler.state_dict(), "scheduler", tensors),
            "ema_updates": self.ema.num_updates,
            "rng": rng,
            "window": self.window,
            "wall_time_s": self.wall_time,
            "history": self.history,
        }
        data = safetensors_save(tensors, metadata={"format": CHECKPOINT_FORMAT})
        state["sha256"] = hashlib.sha256(data).hexdigest()
        tensor_path, json_path = checkpoint_files(self.out_dir, self.step)
        # The sidecar is written last: a checkpoint counts only once both files exist.
        atomic_write_bytes(tensor_path, data)
        atomic_write_bytes(json_path, json_bytes(state))
        for step, old in all_checkpoints(self.out_dir):
            if step < self.step:
                old.unlink()
                old.with_suffix(".safetensors").unlink()
        self.checkpoint = json_path
        return json_path

    def restore(self, json_path: Path) -> None:
        meta, tensors = read_checkpoint(json_path)
        if meta["config"] != self.raw.config:
            raise ValueError(f"{json_path} holds a {meta['config']} model, this run trains "
                             f"{self.raw.config}; use another out_dir or overwrite=True")
        saved_args = meta.get("args", {})
        differences = _config_differences(saved_args, self.args)
        if differences:
            raise ValueError(f"{json_path} was written by a run with another configuration ("
                             + "; ".join(differences) + "); rerun with the original options, "
                             "use another out_dir, or pass overwrite=True to restart")
        self.raw.load_state_dict(unprefixed(tensors, "model"))
        self.ema.module.load_state_dict(unprefixed(tensors, "ema"))
        self.ema.num_updates = meta["ema_updates"]
        self.optimizer.load_state_dict(join_tensors(meta["optimizer"], tensors))
        self.scheduler.load_state_dict(join_tensors(meta["scheduler"], tensors))
        torch.set_rng_state(join_tensors(meta["rng"]["torch"], tensors))
        if self.device.type == "cuda" and "cuda" in meta["rng"]:
            torch.cuda.set_rng_state(join_tensors(meta["rng"]["cuda"], tensors), self.device)
        self.step = meta["step"]
        self.history = meta["history"]
        self.window = meta["window"]
        self.wall_time = meta["wall_time_s"]
        self.checkpoint = Path(json_path)

    # -- one optimisation step
    def train_step(self) -> None:
        rng = np.random.default_rng([self.seed, self.ctx.rank, self.step])
        batch = tuple(t.to(self.device, non_blocking=True) if isinstance(t, torch.Tensor)
                      else t for t in self.task.batch(self.batch_size, rng))
        loss, terms = self.task.loss(self.net, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {float(loss)} at step "
                                     f"{self.step + 1}; lower lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.raw)
        self.step += 1
        sums = self.window["sums"]
        for key, value in {"loss": float(loss.detach()), **terms}.items():
            sums[key] = sums.get(key, 0.0) + value
        self.window["count"] += 1

    def log(self) -> dict:
        count = max(self.window["count"], 1)
        entry = {"step": self.step, **{k: v / count for k, v in self.window["sums"].items()},
                 "lr": self.optimizer.param_groups[0]["lr"]}
        self.history["train"].append(entry)
        self.window = {"count": 0, "sums": {}}
        return entry

    def validate(self) -> dict | None:
        figures = self.task.validate(self.ema.module, self.device, self.batch_size)
        if figures is not None:
            self.history["val"].append({"step": self.step, **figures})
        return figures

    # -- the loop
    def run(self, *, stop, val_every, checkpoint_every, log_every, progress,
            metadata) -> dict:
        from tqdm.auto import tqdm

        main = self.ctx.is_main
        bar = tqdm(total=self.steps, initial=min(self.step, self.steps),
                   disable=not (progress and main), dynamic_ncols=True,
                   desc=f"train {self.task.name} {self.raw.config['architecture']}")
        started = time.perf_counter()
        saved_step = self.step
        shown = {}
        try:
            while self.step < stop:
                self.train_step()
                done = self.step == stop
                if self.step % log_every == 0 or done:
                    shown["loss"] = f"{self.log()['loss']:.4g}"
                    bar.set_postfix(shown, refresh=False)
                if main and (self.step % val_every == 0 or done):
                    figures = self.validate()
                    if figures:
                        shown.update({k: f"{v:.4g}" for k, v in figures.items()})
                        bar.set_postfix(shown, refresh=False)
                if main and (self.step % checkpoint_every == 0 or done):
                    self.wall_time += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save()
                    saved_step = self.step
                bar.update(1)
        except KeyboardInterrupt:
            # Keep the work done so far: a later resume=True call continues from here.
            if main and self.ctx.world_size == 1 and self.step > saved_step:
                self.wall_time += time.perf_counter() - started
                self.save()
            raise
        finally:
            bar.close()
        weights_path = self.out_dir / WEIGHTS_FILE
        if main:
            if self.checkpoint is None or self.step > saved_step:
                self.wall_time += time.perf_counter() - started
                self.save()
            last_val = self.history["val"][-1] if self.history["val"] else {}
            info = {"step": self.step, "train_args": self.args,
                    "val": {k: v for k, v in last_val.items() if k != "step"},
                    "wall_time_s": self.wall_time}
            export_weights(self.ema.module, weights_path, overwrite=True,
                           metadata={**self.task.weights_metadata(), **info,
                                     **(metadata or {})})
        result = {**self.history, "step": self.step, "world_size": self.ctx.world_size,
                  "rank": self.ctx.rank, "finished": self.step >= self.steps,
                  "wall_time_s": self.wall_time, "config": self.raw.config,
                  "weights": str(weights_path),
                  "checkpoint": str(self.checkpoint) if self.checkpoint else None}
        if main:
            atomic_write_bytes(self.out_dir / HISTORY_FILE, json_bytes(result))
        self.ctx.barrier()
        return result
