"""Distilling a 10-step residual diffusion model into a few-step student.

The teacher (a shipped posterior model, e.g. ``diffusion-sr-x2``) runs its own
deterministic sampler on training crops, from noise to sample, and its states at the
timesteps of `lensenhance.diffusion.distill.STUDENT_GRIDS` are kept: a pool of
trajectories. The student (`~lensenhance.nn.localunet.LocalUNet`) learns each jump
``t -> s`` of the grids from those states (`FewStepDistillationTask`); it is told both
times, so one network samples in 1, 2 or 4 evaluations. The student has no
normalisation and no attention, so its tiles agree with the whole image exactly.

The pool is made once and cached in the run folder (the teacher's 10 evaluations per
crop cost more than many student steps); the crops are of the teacher's own training
set, with the teacher's base model's mean, as the teacher saw them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int
from ..diffusion.distill import STUDENT_GRIDS, grid_jumps, landing_x0

__all__ = ["teacher_trajectories", "FewStepDistillationTask", "distill_posterior",
           "STUDENT_NET"]

#: The student network (`~lensenhance.nn.localunet.LocalUNet` arguments).
STUDENT_NET = {"channels": [16, 32, 64], "blocks": 2, "embed_dim": 64}


@torch.no_grad()
def teacher_trajectories(denoiser, cond, noise, *, schedule, times, sampler="dpm", steps=10,
                         batch_size=32, progress=False):
    """The teacher sampler's states at ``times`` and its samples, for each starting noise.

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x_t, t, cond=...)`` in the schedule's parameterisation.
    cond, noise : torch.Tensor
        ``(n, c, y, x)`` conditioning images and ``(n, 1, y, x)`` starting noise.
    schedule : lensenhance.diffusion.NoiseSchedule
    times : sequence of int
        Timesteps of the teacher's sampler at which to keep the state.
    sampler, steps
        The teacher's deterministic sampler, as the posterior model runs it.

    Returns
    -------
    dict
        ``{t: (n, 1, y, x) float32 tensor}`` for each of ``times`` and ``0`` (the samples).
    """
    from tqdm.auto import tqdm

    from ..diffusion import sample

    times = sorted({int(t) for t in times}, reverse=True)
    kept = {t: [] for t in [*times, 0]}

    def keep(_i, t, x_t, _x0):
        if int(t) in kept and int(t) != 0:
            kept[int(t)].append(x_t.float().cpu())

    for start in tqdm(range(0, len(noise), batch_size), disable=not progress,
                      desc="teacher trajectories"):
        part = slice(start, start + batch_size)
        before = {t: len(v) for t, v in kept.items()}
        final = sample(lambda x, t, class_labels=None, cond=None: denoiser(x, t, cond=cond),
                       tuple(noise[part].shape), schedule=schedule, seed=0, sampler=sampler,
                       steps=steps, cond=cond[part], noise=noise[part], callback=keep)
        kept[0].append(final.float().cpu())
        missing = [t for t in times if len(kept[t]) == before[t]]
        if missing:
            raise ValueError(f"timesteps {missing} are not among the teacher's {steps}-step "
                             f"{sampler} timesteps")
    return {t: torch.cat(v) for t, v in kept.items()}


class FewStepDistillationTask:
    """Each jump ``t -> s`` of the student grids, learnt from teacher trajectories.

    Parameters
    ----------
    pool : dict
        ``cond`` ``(n, c, y, x)`` and ``states`` (`teacher_trajectories`' dict) tensors.
    schedule : lensenhance.diffusion.NoiseSchedule
        The teacher's.
    grids : dict, optional
        ``{steps: timesteps}``; default `STUDENT_GRIDS`.
    validation : dict, optional
        A held-out pool; the figure is the loss of each jump and of the 1/2/4-step samples
        against the teacher's.
    metadata : dict, optional
    """

    name = "distill"

    def __init__(self, pool, *, schedule, grids=None, validation=None, metadata=None):
        self.cond = pool["cond"]
        self.states = pool["states"]
        self.schedule = schedule
        self.grids = {int(k): [int(t) for t in v] for k, v in (grids or STUDENT_GRIDS).items()}
        self.jumps = grid_jumps(self.grids)
        missing = {t for jump in self.jumps for t in jump} - set(self.states)
        if missing:
            raise ValueError(f"the pool has no teacher states at {sorted(missing)}")
        self.validation = validation
        self.metadata = dict(metadata or {})

    def __repr__(self):
        return (f"FewStepDistillationTask({len(self.cond)} trajectories, "
                f"jumps={self.jumps})")

    def config(self):
        # as it reads back from a checkpoint's JSON (string keys, lists), so that a resumed
        # run compares equal
        return json.loads(json.dumps({"n": len(self.cond), "grids": self.grids,
                                      "jumps": self.jumps, "schedule": self.schedule.to_dict(),
                                      "metadata": self.metadata}))

    def batch(self, batch_size, rng):
        index = torch.from_numpy(rng.integers(0, len(self.cond), size=batch_size))
        jump = rng.integers(0, len(self.jumps), size=batch_size)
        t = torch.tensor([self.jumps[j][0] for j in jump])
        s = torch.tensor([self.jumps[j][1] for j in jump])
        x_t = torch.stack([self.states[int(a)][i] for a, i in zip(t, index)])
        x_s = torch.stack([self.states[int(b)][i] for b, i in zip(s, index)])
        return self.cond[index], x_t, t, x_s, s

    def _targets(self, x_t, t, x_s, s):
        return torch.stack([landing_x0(self.schedule, x_t[k], int(t[k]), x_s[k], int(s[k]))
                            for k in range(len(t))])

    def loss(self, net, batch):
        cond, x_t, t, x_s, s = batch
        x0 = net(x_t, t, s=s, cond=cond)
        return F.mse_loss(x0, self._targets(x_t, t, x_s, s)), {}

    @torch.no_grad()
    def validate(self, net, device, batch_size):
        """The MSE of the 1, 2 and 4-step samples against the teacher's (held-out pool)."""
        if self.validation is None:
            return None
        from ..diffusion.distill import sample_few_step

        was_training = net.training
        net.eval()
        figures = {}
        try:
            cond, states = self.validation["cond"], self.validation["states"]
            first = max(states)
            for steps in sorted(self.grids):
                errors = []
                for start in range(0, len(cond), batch_size):
                    part = slice(start, start + batch_size)
                    out = sample_few_step(net, states[first][part].to(device),
                                          schedule=self.schedule, steps=steps,
                                          cond=cond[part].to(device), grids=self.grids)
                    errors.append(((out.cpu() - states[0][part]) ** 2).mean(dim=(1, 2, 3)))
                figures[f"val_mse_{steps}step"] = float(torch.cat(errors).mean())
            # what the teacher's samples vary by, for scale
            figures["teacher_sample_var"] = float(states[0].var())
        finally:
            net.train(was_training)
        return figures

    def weights_metadata(self):
        distilled = {**self.metadata.get("distilled", {}), "grids": self.grids}
        return {"task": "posterior", **self.metadata, "distilled": distilled}


def _pool(path, key, make):
    """A pool of trajectories cached in ``path`` under ``key`` (made by ``make()``)."""
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        if stored.get("key") == key:
            return {"cond": stored["cond"], "states": {int(t): v for t, v in
                                                       stored["states"].items()}}
    import io

    from .._atomic import atomic_write_bytes

    pool = make()
    buffer = io.BytesIO()
    torch.save({"key": key, "cond": pool["cond"],
                "states": {str(t): v for t, v in pool["states"].items()}}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return pool


def distill_posterior(*, out_dir, teacher, data, n_pool=4000, n_val=128, patch=64,
                      teacher_steps=10, teacher_sampler="dpm", steps=3000, batch_size=16,
                      lr=5e-4, ema_decay=0.999, net=None, resume=False, overwrite=False,
                      seed=0, max_steps=None, progress=True, device=None, metadata=None):
    """Distil a residual diffusion model into a few-step `LocalUNet` student.

    Parameters
    ----------
    out_dir : path-like
        Run folder (the teacher's trajectories are cached there).
    teacher : str or path-like
        A posterior model: a shipped name or a weights file.
    data : dict
        ``{"train": (x, sigma, truth), "val": (...), "attrs": {...}}`` normalised (the
        teacher's training sets, `lensenhance.training.posterior.posterior_sets`).
    n_pool, n_val : int
        Training and validation trajectories (crops of ``data["train"]`` and
        ``data["val"]``).
    patch : int
        Crop side on the output grid.
    teacher_steps, teacher_sampler
        The teacher's sampler, whose samples the student learns.
    net : dict, optional
        `~lensenhance.nn.localunet.LocalUNet` arguments replacing `STUDENT_NET`.
    steps, batch_size, lr, ema_decay, resume, overwrite, seed, max_steps, device, metadata
        As for `lensenhance.training.train`.

    Returns
    -------
    dict
        The training history.
    """
    from ..diffusion import NoiseSchedule
    from ..nn.localunet import LocalUNet
    from ..nn.weights import load_weights, read_weights_metadata
    from ..predict.posterior import load_base, residual_condition
    from ..pretrained import file_sha256
    from .initial import weights_file
    from .loop import train
    from .posterior import _aligned_crops, base_means, snr_of

    check_int(n_pool, "n_pool")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher_path = weights_file(teacher)
    meta = read_weights_metadata(teacher_path)
    if meta.get("task") != "posterior":
        raise ValueError(f"{teacher_path}: a {meta.get('task')!r} model, not a posterior model")
    schedule = NoiseSchedule.from_dict(meta["schedule"])
    scale = int(meta.get("scale", 1))
    unet = load_weights(teacher_path).eval()
    base = load_base(meta, teacher_path)
    digest = file_sha256(teacher_path)
    times = sorted({t for grid in STUDENT_GRIDS.values() for t in grid}, reverse=True)

    def make(part, n, stream):
        def run():
            x, sigma, truth = data[part]
            mean = base_means(base, x, sigma, device=device or "cpu")
            rng = np.random.default_rng([seed, stream])
            xc, sc, mc = (torch.from_numpy(c) for c in _aligned_crops(
                [x, sigma, mean], [1, 1, scale], patch, rng, len(x), n, augment=False))
            cond, _ = residual_condition(xc, sc, mc, scale)
            noise = torch.from_numpy(rng.standard_normal((n, 1, patch, patch)).astype(
                np.float32))
            torch.manual_seed(seed)
            states = teacher_trajectories(unet, cond, noise, schedule=schedule, times=times,
                                          sampler=teacher_sampler, steps=teacher_steps,
                                          progress=progress)
            return {"cond": cond, "states": states}
        key = json.dumps({"teacher": digest, "part": part, "n": int(n), "patch": int(patch),
                          "seed": int(seed), "steps": int(teacher_steps),
                          "sampler": teacher_sampler, "times": times,
                          "n_images": int(len(data[part][0]))})
        return _pool(out_dir / f"{part}_trajectories.pt", key, run)

    pool = make("train", n_pool, 0)
    validation = make("val", n_val, 1)
    x, sigma, _ = data["train"]
    snr = snr_of(x, sigma)
    torch.manual_seed(seed)
    student = LocalUNet(cond_channels=pool["cond"].shape[1], **{**STUDENT_NET, **(net or {})})
    carried = {k: meta[k] for k in ("base_model", "base_sha256", "base_architecture",
                                    "data_preset", "unit", "pixel_scale", "exposure_log10",
                                    "sigma_floor") if k in meta}
    task = FewStepDistillationTask(pool, schedule=schedule, validation=validation, metadata={
        **carried, "scale": scale, "schedule": schedule.to_dict(),
        "snr_range": meta.get("snr_range") or [float(np.percentile(snr, 1)),
                                               float(np.percentile(snr, 99))],
        "distilled": {"teacher": str(teacher), "teacher_sha256": digest,
                      "teacher_sampler": teacher_sampler, "teacher_steps": int(teacher_steps),
                      "n_trajectories": int(n_pool), "patch": int(patch)}})
    return train(student, task, steps=steps, out_dir=out_dir, batch_size=batch_size, lr=lr,
                 weight_decay=0.0, ema_decay=ema_decay, grad_clip=1.0, val_every=500,
                 checkpoint_every=250, resume=resume, overwrite=overwrite, seed=seed,
                 progress=progress, device=device, metadata=metadata, max_steps=max_steps,
                 extra_config={"teacher": str(teacher), "teacher_sha256": digest})
