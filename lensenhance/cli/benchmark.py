"""The ``benchmark`` group: commands that print figures and write JSON."""

from pathlib import Path

import click

from ..generate.generator import DEFAULT_GENERATOR, MAX_GUIDANCE
from ._common import command_line, fail
from .simulate import PRESET_NAMES

_OVERWRITE = click.option("--overwrite", is_flag=True,
                          help="Replace an existing --json file.")


def _refuse_existing(json_path, overwrite):
    """A benchmark never replaces its results without --overwrite."""
    if json_path is not None and json_path.exists() and not overwrite:
        fail(f"{json_path} exists (use --overwrite)")


@click.group("benchmark")
def benchmark_group():
    """Benchmarks that print figures and write JSON."""


@click.command("speed")
@click.option("--part", type=click.Choice(["simulate", "enhance", "posterior"]),
              default="simulate", show_default=True)
@click.option("-n", "n_images", type=click.IntRange(1), default=2000, show_default=True,
              help="Images per simulation run (--part simulate).")
@click.option("--size", type=click.IntRange(64), default=1024, show_default=True,
              help="Image side for whole vs tiled and dask (--part enhance).")
@click.option("--memory-size", type=click.IntRange(0), default=4096, show_default=True,
              help="FITS side for the command line's peak memory (0: skip).")
@click.option("--memory-only", is_flag=True,
              help="--part enhance: only the command line's peak memory and time per "
                   "megapixel, per --memory-model at each --memory-sides.")
@click.option("--memory-model", "memory_models", multiple=True,
              help="--memory-only: a model, NAME@K for a posterior at K steps (repeatable; "
                   "default fsrcnn-x2).")
@click.option("--memory-sides", default="1024,4096,8192", show_default=True,
              help="--memory-only: image sides, comma-separated, smallest first.")
@click.option("--memory-samples", type=click.IntRange(2), default=None,
              help="--memory-only: posterior samples [default: the command line's].")
@click.option("--resume", is_flag=True,
              help="--memory-only: keep the runs already in --json, run the others.")
@click.option("--model", default="edsr-x2", show_default=True, help="--part enhance model.")
@click.option("--repeats", type=click.IntRange(1), default=2, show_default=True)
@click.option("--no-seams", is_flag=True,
              help="Skip the seam measurements of networks with global operations.")
@click.option("--posterior-model", "posterior_models", multiple=True,
              help="--part posterior: a shipped posterior model (repeatable; default all).")
@click.option("--setting", "settings", multiple=True,
              help="--part posterior: SAMPLES:STEPS (repeatable; default 16:10, 16:4, "
                   "16:2, 16:1, 4:10).")
@click.option("--cutouts", "n_cutouts", type=click.IntRange(1), default=8, show_default=True,
              help="--part posterior: cutouts per timing.")
@click.option("--no-catalog", is_flag=True, help="--part posterior: skip the catalog runs.")
@click.option("--dask", "use_dask", is_flag=True,
              help="--part posterior: also run each catalog on a local dask.distributed "
                   "cluster (--scheduler).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="--part posterior: torch threads.")
@click.option("--note", default=None, help="Recorded in the JSON (e.g. other load).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@_OVERWRITE
@click.pass_context
def benchmark_speed_command(ctx, part, n_images, size, memory_size, memory_only, memory_models,
                            memory_sides, memory_samples, resume, model, repeats, no_seams,
                            posterior_models, settings, n_cutouts, no_catalog, use_dask, threads,
                            note, json_path, overwrite):
    """Speed: simulation images/s, the enhancement engine, or posterior sampling."""
    _refuse_existing(json_path, overwrite or resume)  # --resume keeps what is there
    if part == "posterior":
        from ..benchmark.speed_posterior import (
            POSTERIOR_SETTINGS,
            benchmark_posterior_speed,
            format_posterior_speed_table,
        )

        try:
            pairs = [tuple(int(v) for v in item.split(":")) for item in settings]
        except ValueError:
            raise click.BadParameter("expected SAMPLES:STEPS, e.g. 16:4",
                                     param_hint="--setting") from None
        try:
            result = benchmark_posterior_speed(
                models=list(posterior_models) or None, settings=pairs or POSTERIOR_SETTINGS,
                n=n_cutouts, repeats=repeats,
                threads=threads, catalog=not no_catalog, dask=use_dask, json_path=json_path,
                note=note,
                command=command_line(ctx))
        except (OSError, ValueError, RuntimeError) as error:
            fail(str(error))
        click.echo(format_posterior_speed_table(result))
        return
    if part == "enhance" and memory_only:
        from ..benchmark.speed import benchmark_memory

        try:
            sides = [int(side) for side in memory_sides.split(",")]
        except ValueError:
            raise click.BadParameter("expected sides like 1024,4096,8192",
                                     param_hint="--memory-sides") from None
        benchmark_memory(models=list(memory_models) or ["fsrcnn-x2"], sizes=sides,
                         n_samples=memory_samples, json_path=json_path, resume=resume,
                         note=note, command=command_line(ctx))
        return
    if part == "enhance":
        from ..benchmark.speed import SEAM_RUNS, benchmark_enhance

        benchmark_enhance(size=size, model=model, repeats=repeats,
                          memory_size=memory_size or None, json_path=json_path, note=note,
                          seams=() if no_seams else SEAM_RUNS, command=command_line(ctx))
        return
    from ..benchmark.speed import benchmark_simulate

    benchmark_simulate(n=n_images, json_path=json_path)


@click.command("sr")
@click.option("-n", "n_images", type=click.IntRange(3), default=1000, show_default=True,
              help="Held-out images (classes in equal parts).")
@click.option("--scale", type=click.Choice(["2", "4"]), default="2", show_default=True)
@click.option("--model", "models", multiple=True,
              help="Pretrained model(s) to include (default: all of this scale); NAME@K "
              "runs a diffusion model at K sampler steps.")
@click.option("--no-self-ensemble", is_flag=True, help="Skip the D4 self-ensemble rows.")
@click.option("--no-regression", is_flag=True, help="Skip the downstream theta_E regression.")
@click.option("--regression-seeds", type=click.IntRange(1), default=3, show_default=True,
              help="Repeats of the theta_E regression (split and initialisation).")
@click.option("--preset", default="model_i", show_default=True,
              type=click.Choice(PRESET_NAMES))
@click.option("--lr-on-preset-grid", is_flag=True,
              help="LR images on the preset's own grid, HR scale times finer.")
@click.option("--noise-free-lr", is_flag=True, help="LR = HR binned, without noise.")
@click.option("--n-samples", type=click.IntRange(2), default=16, show_default=True,
              help="Posterior samples per image of diffusion models (--model diffusion-sr-x2).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@_OVERWRITE
@click.pass_context
def benchmark_sr_command(ctx, n_images, scale, models, no_self_ensemble, no_regression,
                         regression_seeds, preset, lr_on_preset_grid, noise_free_lr, n_samples,
                         workers, json_path, overwrite):
    """Super-resolution: MSE/PSNR/SSIM of every model and baseline, and theta_E regression."""
    from ..benchmark.sr import benchmark_sr

    _refuse_existing(json_path, overwrite)
    benchmark_sr(n=n_images, scale=int(scale), models=list(models) or None, preset=preset,
                 lr_on_preset_grid=lr_on_preset_grid, noise_free_lr=noise_free_lr,
                 self_ensemble=not no_self_ensemble, regression=not no_regression,
                 regression_seeds=regression_seeds, n_samples=n_samples, workers=workers,
                 json_path=json_path,
                 progress=ctx.obj["progress"], command=command_line(ctx))


@click.command("generate")
@click.option("-n", "n_images", type=click.IntRange(4), default=1000, show_default=True,
              help="Images per row and per simulated comparison set.")
@click.option("--n-ddpm", type=click.IntRange(4), default=None,
              help="Images for rows of more than 100 steps (default -n).")
@click.option("--model", default=DEFAULT_GENERATOR, show_default=True,
              help="A shipped generator or a weights file.")
@click.option("--enhancer", default=None,
              help="A shipped SR model that takes a binned generator's images to its "
                   "preset's grid: the chain is measured.")
@click.option("--classifier", default=None,
              help="A shipped classifier or a weights file (its features measure images); "
                   "default: the shipped one trained on the generator's preset.")
@click.option("--samplers", default="ddpm:1000,ddim:50,dpm:20", show_default=True,
              help="Rows as sampler:steps pairs.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--no-memorisation", is_flag=True, help="Skip the memorisation check.")
@click.option("--tstr-epochs", type=click.IntRange(0), default=15, show_default=True,
              help="Epochs of the train-on-generated classifiers (0: skip).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Keep the simulated comparison sets here for reruns.")
@click.option("--guidance", type=click.FloatRange(0, MAX_GUIDANCE), default=None,
              help="Classifier-free guidance weight of every row (default: conditional).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@_OVERWRITE
@click.pass_context
def benchmark_generate_command(ctx, n_images, n_ddpm, model, enhancer, classifier, samplers,
                               batch_size, no_memorisation, tstr_epochs, seed, workers,
                               cache_dir, guidance, json_path, overwrite):
    """FD/KID vs the real-vs-real floor, conditional fidelity, TSTR, memorisation, speed."""
    from ..benchmark.generate import benchmark_generate, format_generate_table

    _refuse_existing(json_path, overwrite)
    try:
        rows = [(name, int(steps)) for name, steps in
                (item.split(":") for item in samplers.split(","))]
    except ValueError:
        raise click.BadParameter(f"{samplers!r}: expected sampler:steps pairs, e.g. "
                                 "ddim:50,dpm:20", param_hint="--samplers") from None
    try:
        result = benchmark_generate(generator=model, classifier=classifier, n=n_images,
                                    n_ddpm=n_ddpm, samplers=rows, batch_size=batch_size,
                                    memorisation=not no_memorisation,
                                    tstr_epochs=tstr_epochs, seed=seed, json_path=json_path,
                                    workers=workers, cache_dir=cache_dir, guidance=guidance,
                                    enhancer=enhancer, progress=ctx.obj["progress"],
                                    command=command_line(ctx))
    except (OSError, ValueError) as error:
        fail(str(error))
    click.echo(format_generate_table(result))


@click.command("denoise")
@click.option("-n", "n_images", type=click.IntRange(2), default=100, show_default=True,
              help="Held-out images (at most this many HSC 'val' pairs with --real).")
@click.option("--model", "models", multiple=True,
              help="A shipped model or weights file (repeat; default: the shipped "
                   "denoisers for the set); NAME@K runs a diffusion model at K steps.")
@click.option("--real", "real_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="HSC Wide -> Deep pairs folder: score on its 'val' split.")
@click.option("--n-samples", type=click.IntRange(2), default=16, show_default=True,
              help="Posterior samples per image of the diffusion models.")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Sampler steps of the diffusion models (default: the model's).")
@click.option("--n-tune", type=click.IntRange(2), default=24, show_default=True,
              help="Images on which the classical denoisers' strengths are tuned.")
@click.option("--plot", "plot_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Write PNG panels (input, mean, std, truth, residual, z).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@_OVERWRITE
@click.pass_context
def benchmark_denoise_command(ctx, n_images, models, real_dir, n_samples, steps, n_tune,
                              plot_dir, workers, json_path, overwrite):
    """Denoising: posterior mean PSNR/SSIM, calibration and fine-scale power of every denoiser."""
    from ..benchmark import write_json
    from ..benchmark.denoise import benchmark_denoise, format_denoise_table
    from ..pretrained import list_pretrained

    _refuse_existing(json_path, overwrite)
    if not models:
        wanted = (("diffusion-denoise-hsc", "raunet-denoise-hsc", "diffusion-denoise")
                  if real_dir else ("diffusion-denoise", "raunet-denoise"))
        models = [name for name in wanted if name in list_pretrained()]
    try:
        result = benchmark_denoise(n=n_images, models=models, n_samples=n_samples,
                                   steps=steps, n_tune=n_tune, real=real_dir,
                                   plot_dir=plot_dir, workers=workers,
                                   progress=ctx.obj["progress"])
    except (OSError, ValueError) as error:
        fail(str(error))
    result["command"] = command_line(ctx)
    click.echo(format_denoise_table(result))
    if json_path is not None:
        write_json(result, json_path)


@click.command("detectability")
@click.option("-n", "n_images", type=click.IntRange(3), default=100, show_default=True,
              help="Images per preset and class.")
@click.option("--preset", "presets", multiple=True,
              help="Preset(s) to measure (default: the DeepLense and physical ones).")
@click.option("--no-refit", is_flag=True, help="Skip the smooth-model refit.")
@click.option("--seed", type=int, default=2024, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.pass_context
def benchmark_detectability_command(ctx, n_images, presets, no_refit, seed, workers,
                                    json_path):
    """Substructure detectability: sub_chi2 and sub_chi2_refit per preset and class."""
    from ..benchmark.detectability import DEFAULT_PRESETS, benchmark_detectability
    from ..simulate.presets import PRESETS

    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        fail(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(sorted(PRESETS))}")
    benchmark_detectability(n=n_images, presets=presets or DEFAULT_PRESETS,
                            refit=not no_refit, seed=seed, workers=workers,
                            json_path=json_path, command=command_line(ctx),
                            progress=ctx.obj["progress"])


@click.command("downstream")
@click.option("-n", "n_images", type=click.IntRange(3), default=300, show_default=True,
              help="Held-out deeplense_model_i pairs for the classification.")
@click.option("--n-theta", type=click.IntRange(0), default=300, show_default=True,
              help="Held-out model_i pairs for the theta_E regression (0: skip).")
@click.option("--model", "models", multiple=True,
              help="SR model(s) (default: every shipped x2 model for model_i).")
@click.option("--no-posterior", is_flag=True, help="Leave out diffusion-sr-x2.")
@click.option("--classifier", default="lens-classifier-deeplense-i", show_default=True,
              help="A shipped substructure classifier or its weights file.")
@click.option("--n-samples", type=click.IntRange(2), default=4, show_default=True,
              help="Posterior samples averaged for diffusion-sr-x2's mean.")
@click.option("--n-boot", type=click.IntRange(10), default=1000, show_default=True)
@click.option("--seed", type=int, default=20261205, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.pass_context
def benchmark_downstream_command(ctx, n_images, n_theta, models, no_posterior, classifier,
                                 n_samples, n_boot, seed, workers, json_path):
    """Downstream science: substructure AUC and theta_E MAE from LR, SR and HR images."""
    from ..benchmark.downstream import benchmark_downstream

    benchmark_downstream(n=n_images, n_theta=n_theta, models=list(models) or None,
                         posterior=not no_posterior, classifier=classifier,
                         n_samples=n_samples, n_boot=n_boot,
                         seed=seed, workers=workers, json_path=json_path,
                         command=command_line(ctx), progress=ctx.obj["progress"])
