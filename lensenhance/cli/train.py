"""The ``train`` group: every resumable training run of the shipped models."""

from pathlib import Path

import click

from ._common import command_line, fail, given
from .simulate import PRESET_NAMES


@click.group("train")
def train_group():
    """Train networks (same command under torchrun for several GPUs or machines)."""


def _parse_loss(text):
    try:
        weights = {key.strip(): float(value) for key, value in
                   (item.split("=") for item in text.split(",") if item.strip())}
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected name=weight pairs, e.g. l1=1,ssim=0.2",
                                 param_hint="--loss") from None
    return weights


@click.command("sr")
@click.option("--model", default="rcan", show_default=True,
              type=click.Choice(["rcan", "rdn", "srresnet", "edsr", "fsrcnn"]))
@click.option("--scale", type=click.Choice(["2", "4"]), default="2", show_default=True)
@click.option("--size", default="small", show_default=True, type=click.Choice(["small", "paper"]),
              help="Network size preset.")
@click.option("--preset", default="model_i", show_default=True,
              type=click.Choice(PRESET_NAMES), help="Simulation preset of the training data.")
@click.option("--data", default="simulate", show_default=True,
              help="'simulate', a dataset (.nc/.zarr), an .npz with lr/hr, or a catalogue "
                   "with lr_path/hr_path columns (real pairs for fine-tuning).")
@click.option("--n-train", type=click.IntRange(1), default=4000, show_default=True,
              help="Pairs to simulate for --data simulate.")
@click.option("--lr-on-preset-grid", is_flag=True,
              help="--data simulate: LR images on the preset's own grid, HR scale times "
                   "finer (a model for images made on that grid, e.g. a generator's).")
@click.option("--noise-free-lr", is_flag=True,
              help="--data simulate: LR = HR binned, without noise (for noise-free inputs).")
@click.option("--n-val", type=click.IntRange(1), default=64, show_default=True)
@click.option("--data-seed", type=int, default=1, show_default=True)
@click.option("--steps", type=click.IntRange(1), required=True)
@click.option("--max-steps", type=click.IntRange(1), default=None,
              help="Stop (checkpointed) after this step; --resume later to go on.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--patch-size", type=click.IntRange(4), default=48, show_default=True,
              help="HR patch side.")
@click.option("--lr", "learning_rate", type=float, default=2e-4, show_default=True)
@click.option("--loss", default="l1=1", show_default=True,
              help="Weights of l1, mse, ssim (and feature), e.g. l1=1,ssim=0.2.")
@click.option("--ema-decay", type=float, default=0.999, show_default=True)
@click.option("--grad-clip", type=float, default=1.0, show_default=True)
@click.option("--val-every", type=click.IntRange(1), default=250, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Simulation workers.")
@click.option("--device", default=None, help="Default: CUDA when available, else CPU.")
@click.option("--feature-net", default="thetae-resnet", show_default=True,
              help="Shipped frozen network of the feature loss (used when --loss has a "
                   "feature weight).")
@click.option("--init", "init_weights", default=None,
              help="Start from these weights (a shipped model's name or a weights file): "
                   "fine-tuning. --model and --size are then not used.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out.")
@click.option("--overwrite", is_flag=True, help="Start afresh, deleting checkpoints in --out.")
@click.pass_context
def train_sr_command(ctx, model, scale, size, preset, data, n_train, lr_on_preset_grid,
                     noise_free_lr, n_val, data_seed, steps, max_steps,
                     batch_size, patch_size, learning_rate, loss, ema_decay, grad_clip,
                     val_every, checkpoint_every, seed, workers, device, feature_net,
                     init_weights, out_dir, resume, overwrite):
    """Train a residual super-resolution network; exports EMA weights as safetensors."""
    from ..pretrained import load_feature_network
    from ..training import train_sr
    from ..training.data import training_pairs

    scale = int(scale)
    loss_weights = _parse_loss(loss)
    try:
        frozen = load_feature_network(feature_net) if loss_weights.get("feature") else None
    except ValueError as error:
        fail(str(error))
    source, val = training_pairs(data, scale=scale, patch_size=patch_size, n=n_train,
                                 n_val=n_val, preset=preset, seed=data_seed, workers=workers,
                                 progress=ctx.obj["progress"],
                                 lr_on_preset_grid=lr_on_preset_grid,
                                 noise_free_lr=noise_free_lr)
    try:
        history = train_sr(
            model=model, scale=scale, preset=size, data=source, val_data=val, steps=steps,
            out_dir=out_dir, batch_size=batch_size, lr=learning_rate,
            loss_weights=loss_weights, ema_decay=ema_decay, grad_clip=grad_clip or None,
            val_every=val_every, checkpoint_every=checkpoint_every, resume=resume,
            overwrite=overwrite, seed=seed, device=device, progress=ctx.obj["progress"],
            feature_net=frozen, max_steps=max_steps, init=init_weights,
            metadata={"command": command_line(ctx), "data_preset": preset, "data": str(data),
                      "lr_on_preset_grid": lr_on_preset_grid, "noise_free_lr": noise_free_lr})
    except FileExistsError as error:
        fail(f"{error} (use --resume or --overwrite)")
    except ValueError as error:
        fail(str(error))
    if history.get("rank", 0) == 0 and history.get("weights"):
        val_psnr = history["val"][-1]["psnr"] if history.get("val") else float("nan")
        click.echo(f"step {history['step']}, world size {history['world_size']}, "
                   f"val PSNR {val_psnr:.2f} dB, {history['wall_time_s']:.0f} s: "
                   f"{history['weights']}")


@click.command("features")
@click.option("-n", "n_train", type=click.IntRange(2), default=2000, show_default=True,
              help="Simulated HR images to train on (classes in equal parts).")
@click.option("--n-val", type=click.IntRange(1), default=200, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=15, show_default=True)
@click.option("--preset", default="model_i", show_default=True,
              type=click.Choice(["model_i", "model_ii", "model_iii"]))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-seed", type=int, default=2, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--overwrite", is_flag=True)
@click.pass_context
def train_features_command(ctx, n_train, n_val, epochs, preset, seed, data_seed, out_dir,
                           overwrite):
    """Train the feature-loss network: a small ResNet regressing theta_E on HR images."""
    from ..training import train_feature_network

    try:
        result = train_feature_network(out_dir, n=n_train, n_val=n_val, epochs=epochs,
                                       preset=preset, seed=seed, data_seed=data_seed,
                                       overwrite=overwrite, progress=ctx.obj["progress"],
                                       metadata={"command": command_line(ctx)})
    except FileExistsError as error:
        fail(f"{error} (use --overwrite)")
    click.echo(f"theta_E MAE on {n_val} held-out images: {result['val_mae']:.4f} arcsec, "
               f"{result['wall_time_s']:.0f} s: {result['weights']}")


@click.command("classifier")
@click.option("-n", "n_train", type=click.IntRange(3), default=6000, show_default=True,
              help="Simulated noise-free images to train on (classes in equal parts).")
@click.option("--n-val", type=click.IntRange(1), default=600, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=2e-3, show_default=True)
@click.option("--width", type=click.IntRange(1), default=16, show_default=True,
              help="Channels of the network's first stage.")
@click.option("--preset", default="model_ii", show_default=True,
              type=click.Choice(PRESET_NAMES),
              help="Simulation preset of the images (the generator's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-seed", type=int, default=11, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Simulation workers.")
@click.option("--device", default=None, help="Default: CUDA when available, else CPU.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--overwrite", is_flag=True)
@click.pass_context
def train_classifier_command(ctx, n_train, n_val, epochs, batch_size, learning_rate, width,
                             preset, seed, data_seed, workers, device, out_dir, overwrite):
    """Train the lensing classifier (no_sub/cdm/axion) whose features measure generators."""
    from ..training.classifier import train_classifier

    try:
        result = train_classifier(out_dir, n=n_train, n_val=n_val, epochs=epochs,
                                  batch_size=batch_size, lr=learning_rate, width=width,
                                  preset=preset, seed=seed, data_seed=data_seed,
                                  workers=workers, device=device, overwrite=overwrite,
                                  progress=ctx.obj["progress"],
                                  metadata={"command": command_line(ctx)})
    except FileExistsError as error:
        fail(f"{error} (use --overwrite)")
    if result.get("val_mae"):
        click.echo("mean absolute error on the held-out images: " + ", ".join(
            f"{name} {value:.3g}" for name, value in result["val_mae"].items()))
    click.echo(f"accuracy on {n_val} held-out images: {result['val_accuracy']:.3f}, "
               f"{result['wall_time_s']:.0f} s: {result['weights']}")


@click.command("ddpm")
@click.option("--preset", default="model_ii", show_default=True,
              type=click.Choice(PRESET_NAMES),
              help="Simulation preset of the noise-free training images.")
@click.option("--num-pix", type=click.IntRange(8), default=None,
              help="The preset's field in its own pixels (default: the preset's).")
@click.option("--binned", type=click.IntRange(1), default=1, show_default=True,
              help="Sum the images over blocks of this size: the 64 px half of a chain "
                   "whose SR model (--noise-free-lr) returns the preset's grid.")
@click.option("--n-train", type=click.IntRange(3), default=9000, show_default=True)
@click.option("--n-val", type=click.IntRange(3), default=240, show_default=True)
@click.option("--data-seed", type=int, default=3, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=30000, show_default=True)
@click.option("--max-steps", type=click.IntRange(1), default=None,
              help="Stop (checkpointed) after this step; --resume later to go on.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=2e-4, show_default=True)
@click.option("--ema-decay", type=float, default=0.9995, show_default=True)
@click.option("--parameterization", default="v", show_default=True,
              type=click.Choice(["v", "epsilon", "x0"]))
@click.option("--label-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.1,
              show_default=True, help="Share of unconditional samples (for guidance).")
@click.option("--val-every", type=click.IntRange(1), default=500, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=250, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Simulation workers.")
@click.option("--device", default=None, help="Default: CUDA when available, else CPU.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out.")
@click.option("--overwrite", is_flag=True, help="Start afresh, deleting checkpoints in --out.")
@click.pass_context
def train_ddpm_command(ctx, preset, num_pix, binned, n_train, n_val, data_seed, steps,
                       max_steps, batch_size, learning_rate, ema_decay, parameterization,
                       label_dropout, val_every, checkpoint_every, seed, workers, device,
                       out_dir, resume, overwrite):
    """Train the class-conditional lensing-image generator (a DDPM on noise-free images)."""
    from ..training.diffusion import train_ddpm

    try:
        history = train_ddpm(
            out_dir=out_dir, preset=preset, num_pix=num_pix, binned=binned, n_train=n_train,
            n_val=n_val, data_seed=data_seed, steps=steps, max_steps=max_steps,
            batch_size=batch_size, lr=learning_rate, ema_decay=ema_decay,
            parameterization=parameterization, label_dropout=label_dropout, val_every=val_every,
            checkpoint_every=checkpoint_every, seed=seed, workers=workers, device=device,
            resume=resume, overwrite=overwrite, progress=ctx.obj["progress"],
            metadata={"command": command_line(ctx)})
    except (FileExistsError, ValueError) as error:
        fail(str(error))
    val = history["val"][-1]["val_loss"] if history.get("val") else float("nan")
    click.echo(f"step {history['step']} of {steps}, validation loss {val:.4g}, "
               f"{history['wall_time_s']:.0f} s: {history['weights']}")


def _run_options(function):
    """The options every resumable training run shares (steps, checkpoints, --out)."""
    for option in reversed([
        click.option("--steps", type=click.IntRange(1), default=None,
                     help="Total optimisation steps (default: the model's)."),
        click.option("--max-steps", type=click.IntRange(1), default=None,
                     help="Stop (checkpointed) after this step; --resume later to go on."),
        click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True),
        click.option("--lr", "learning_rate", type=float, default=None,
                     help="Peak AdamW learning rate (default: the model's)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default=None, help="Default: CUDA when available, else CPU."),
        click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True),
        click.option("--resume", is_flag=True,
                     help="Continue from the latest checkpoint in --out."),
        click.option("--overwrite", is_flag=True,
                     help="Start afresh, deleting checkpoints in --out."),
    ]):
        function = option(function)
    return function


@click.command("denoiser")
@click.option("--n-train", type=click.IntRange(3), default=6000, show_default=True)
@click.option("--n-val", type=click.IntRange(3), default=200, show_default=True)
@click.option("--data-seed", type=int, default=5, show_default=True)
@click.option("--hsc", "hsc_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Train on the 'train' split of HSC Wide -> Deep pairs in "
              "this folder instead of simulated pairs.")
@click.option("--init", "init_weights", default=None,
              help="Start from these weights (a registry name or file): fine-tuning.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Simulation workers.")
@_run_options
@click.pass_context
def train_denoiser_command(ctx, n_train, n_val, data_seed, hsc_dir, init_weights, workers,
                          steps, max_steps, batch_size, learning_rate, seed, device, out_dir,
                          resume, overwrite):
    """Train the RAUNet denoiser (image + per-pixel sigma -> clean image)."""
    from ..training.posterior import train_denoiser

    try:
        data = None
        if hsc_dir is not None:
            from ..training.posterior import hsc_sets

            data = hsc_sets(hsc_dir)
        history = train_denoiser(
            out_dir=out_dir, n_train=n_train, n_val=n_val, data_seed=data_seed,
            workers=workers, data=data, init=init_weights, max_steps=max_steps,
            batch_size=batch_size, seed=seed, device=device, resume=resume,
            overwrite=overwrite, progress=ctx.obj["progress"],
            metadata={"command": command_line(ctx)},
            **given(steps=steps, lr=learning_rate))
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    val = history["val"][-1] if history.get("val") else {}
    click.echo(f"step {history['step']}, validation PSNR {val.get('val_psnr', float('nan')):.2f}"
               f" dB, {history['wall_time_s']:.0f} s: {history['weights']}")


@click.command("posterior")
@click.option("--task", "kind", type=click.Choice(["denoise", "sr"]), required=True,
              help="What the base model does: denoise (scale 1) or super-resolve (x2).")
@click.option("--base", required=True,
              help="The deterministic model giving the mean (registry name or file).")
@click.option("--n-train", type=click.IntRange(3), default=None,
              help="Simulated training images (default: 6000 denoise, 3000 sr).")
@click.option("--n-val", type=click.IntRange(3), default=200, show_default=True)
@click.option("--data-seed", type=int, default=None,
              help="Simulation seed (default: the base model's training seed).")
@click.option("--hsc", "hsc_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Train on the 'train' split of HSC Wide -> Deep pairs.")
@click.option("--init", "init_weights", default=None,
              help="Start from these weights (a registry name or file): fine-tuning.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Simulation workers.")
@_run_options
@click.pass_context
def train_posterior_command(ctx, kind, base, n_train, n_val, data_seed, hsc_dir,
                            init_weights, workers, steps, max_steps, batch_size,
                            learning_rate, seed, device, out_dir, resume, overwrite):
    """Train a residual diffusion model: the posterior around a deterministic model's mean."""
    from ..training.posterior import posterior_sets, train_residual_diffusion

    try:
        data, scale = posterior_sets(kind, out_dir=out_dir, hsc_dir=hsc_dir,
                                     progress=ctx.obj["progress"], workers=workers,
                                     n_val=n_val, **given(n_train=n_train,
                                                           data_seed=data_seed))
        history = train_residual_diffusion(
            out_dir=out_dir, base=base, data=data, scale=scale, init=init_weights,
            max_steps=max_steps, batch_size=batch_size, seed=seed, device=device,
            resume=resume, overwrite=overwrite, progress=ctx.obj["progress"],
            metadata={"command": command_line(ctx)},
            **given(steps=steps, lr=learning_rate))
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    val = history["val"][-1]["val_loss"] if history.get("val") else float("nan")
    click.echo(f"step {history['step']}, validation loss {val:.4g}, "
               f"{history['wall_time_s']:.0f} s: {history['weights']}")


@click.command("distill")
@click.option("--teacher", required=True,
              help="The 10-step posterior model to distil (registry name or file).")
@click.option("--task", "kind", type=click.Choice(["denoise", "sr"]), required=True,
              help="The teacher's task: its training set gives the crops.")
@click.option("--n-pool", type=click.IntRange(16), default=4000, show_default=True,
              help="Teacher trajectories to learn from (crops of the training images).")
@click.option("--n-val", type=click.IntRange(3), default=200, show_default=True)
@click.option("--hsc", "hsc_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="The teacher was trained on HSC Wide -> Deep pairs here.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Simulation workers.")
@_run_options
@click.pass_context
def train_distill_command(ctx, teacher, kind, n_pool, n_val, hsc_dir, workers, steps,
                          max_steps, batch_size, learning_rate, seed, device, out_dir, resume,
                          overwrite):
    """Distil a posterior model into a student that samples in 1, 2 or 4 steps."""
    from ..training.distill import distill_posterior
    from ..training.posterior import posterior_sets

    try:
        data, _ = posterior_sets(kind, out_dir=out_dir, hsc_dir=hsc_dir,
                                 progress=ctx.obj["progress"], workers=workers, n_val=n_val)
        history = distill_posterior(
            out_dir=out_dir, teacher=teacher, data=data, n_pool=n_pool,
            max_steps=max_steps, batch_size=batch_size, seed=seed, device=device,
            resume=resume, overwrite=overwrite, progress=ctx.obj["progress"],
            metadata={"command": command_line(ctx)},
            **given(steps=steps, lr=learning_rate))
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    val = history["val"][-1] if history.get("val") else {}
    figures = ", ".join(f"{k} {v:.4g}" for k, v in val.items() if k.startswith("val_mse"))
    click.echo(f"step {history['step']}, {figures}, {history['wall_time_s']:.0f} s: "
               f"{history['weights']}")
