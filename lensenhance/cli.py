"""The ``lensenhance`` command line: thin click commands over the Python API.

Every command only parses options and calls a function of the package; all subcommands
are registered in `_register_commands` at the bottom of this file.
"""

import logging
import sys
from pathlib import Path

import click

from ._version import __version__

log = logging.getLogger("lensenhance")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lensenhance")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx, verbose, quiet):
    """lensenhance: simulate, enhance and generate strong-lensing images."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["progress"] = not quiet


def _fail(message):
    raise click.ClickException(message)


def _hdu(value):
    """An --hdu option: an index when it is a number, else an extension name."""
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


# -- info ---------------------------------------------------------------------------------

@click.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--hdu", default=None, help="HDU index or name (default: first 2-D image).")
def info_command(files, hdu):
    """Print shape, dtype, unit, WCS centre, pixel scale and NaN count of FITS images."""
    from .io import describe_image

    failures = 0
    for path in files:
        try:
            summary = describe_image(path, hdu=_hdu(hdu))
        except (OSError, ValueError, TypeError, KeyError) as error:
            click.echo(f"{path}: error: {error}", err=True)
            failures += 1
            continue
        click.echo(f"{path}:")
        for key, value in summary.items():
            click.echo(f"  {key:<12} {value}")
    if failures:
        _fail(f"{failures} of {len(files)} file(s) could not be read")


# -- demo ---------------------------------------------------------------------------------

@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default="demo_out",
              show_default=True, help="Folder for the FITS files and the figure.")
@click.option("-n", "n_images", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace files from an earlier run.")
@click.pass_context
def demo_command(ctx, out_dir, n_images, seed, overwrite):
    """Simulate a few lenses, enhance them, write FITS and a figure, print metrics."""
    from .demo import run_demo

    try:
        result = run_demo(out_dir, n_images=n_images, seed=seed, overwrite=overwrite,
                          progress=ctx.obj["progress"])
    except FileExistsError as error:
        _fail(f"{error} (use --overwrite)")
    click.echo(result["table"])
    click.echo(f"wrote {len(result['files'])} files to {out_dir}")


# -- simulate -----------------------------------------------------------------------------

@click.command("simulate")
@click.option("--preset", default="model_i", show_default=True,
              type=click.Choice(["model_i", "model_ii", "model_iii"]))
@click.option("--substructure", default="no_sub", show_default=True,
              type=click.Choice(["no_sub", "cdm", "axion", "all"]),
              help="'all' makes the three classes in equal parts.")
@click.option("-n", "n_images", type=click.IntRange(1), default=100, show_default=True)
@click.option("--scale", type=click.Choice(["2", "4"]), default="2", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["fits", "zarr", "netcdf"]),
              default="fits", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--chunk-size", type=click.IntRange(1), default=256, show_default=True,
              help="FITS: images simulated and written at a time (memory stays flat).")
@click.option("--overwrite", is_flag=True, help="Start afresh, replacing every file.")
@click.pass_context
def simulate_command(ctx, preset, substructure, n_images, scale, out_dir, fmt, seed, workers,
                     chunk_size, overwrite):
    """Simulate HR/LR lensing pairs with truth catalogues.

    FITS output is written as it goes and resumes: the same command run again after an
    interruption simulates only the missing images (with the same result).
    """
    from ._runfolder import check_output_folder
    from .simulation_files import simulate_to_disk

    try:
        check_output_folder(out_dir, create=False)
        written = simulate_to_disk(out_dir, preset=preset, substructure=substructure,
                                   n=n_images, scale=int(scale), fmt=fmt, seed=seed,
                                   workers=workers, overwrite=overwrite,
                                   progress=ctx.obj["progress"], chunk_size=chunk_size)
    except FileExistsError as error:
        _fail(f"{error} (use --overwrite)" if "--overwrite" not in str(error) else str(error))
    except (OSError, ValueError) as error:
        _fail(str(error))
    click.echo(f"{n_images} {preset}/{substructure} pairs: {written}")


# -- enhance ------------------------------------------------------------------------------

def _enhancement_options(function):
    """The options `enhance` and `denoise` share: inputs, outputs, execution, model."""
    for option in reversed([
        click.argument("files", nargs=-1, type=click.Path(path_type=Path)),
        click.option("--catalog", type=click.Path(path_type=Path), default=None,
                     help="A FITS or ECSV table of images (instead of FILES)."),
        click.option("--path-column", default="path", show_default=True,
                     help="The catalog's column of image paths."),
        click.option("--key-column", default=None,
                     help="A column of unique row keys naming the outputs (default: "
                          "the input's path relative to the catalog's folder)."),
        click.option("--allow-outside", is_flag=True,
                     help="Accept catalog rows pointing outside the catalog's folder."),
        click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
                     help="Output folder: FITS files, catalog.ecsv (status of every "
                          "row), run.json, run_log.jsonl."),
        click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
                     help="Rows enhanced at once, in worker processes."),
        click.option("--scheduler", default=None,
                     help="Send the rows to this dask.distributed scheduler address."),
        click.option("--self-ensemble", is_flag=True,
                     help="Average over the 8 rotations/flips."),
        click.option("--tile-size", type=click.IntRange(1), default=None,
                     help="Tile side incl. halo [default: 576 on a CPU, 1024 on a GPU]."),
        click.option("--whole", is_flag=True, help="No tiles: each image in one pass."),
        click.option("--overlap", type=click.IntRange(0), default=None,
                     help="Blending band between tiles [default: 0 when tiling is exact]."),
        click.option("--tile-threads", type=click.IntRange(1), default=1, show_default=True,
                     help="Threads running the tiles of one image in parallel (dask)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda, cuda:N."),
        click.option("--n-samples", type=click.IntRange(2), default=None,
                     help="Posterior samples per pixel of a diffusion model [default: 16]."),
        click.option("--steps", type=click.IntRange(1), default=None,
                     help="Sampler steps of a diffusion model [default: the model's]."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--hdu", default=None, help="HDU index or name of the inputs."),
        click.option("--plot", is_flag=True,
                     help="Also write a PNG panel per row (input, mean, std) in OUT/plots."),
        click.option("--overwrite", is_flag=True,
                     help="Redo every row and replace its output (default: a rerun "
                          "skips the rows already done)."),
    ]):
        function = option(function)
    return function


def _run_enhancement(ctx, task, *, files, catalog, path_column, key_column, allow_outside,
                     model, scale, out_dir, workers, scheduler, self_ensemble, tile_size,
                     whole, overlap, tile_threads, device, n_samples, steps, seed, hdu, plot,
                     overwrite):
    """What `enhance` and `denoise` run: check, build the model, run the rows, report."""
    from ._runfolder import check_output_folder
    from .catalog import catalog_from_files, enhance_catalog
    from .enhance import Enhancer

    if bool(files) == (catalog is not None):
        raise click.UsageError("give FITS files or --catalog CATALOG (one of the two)")
    if scheduler is not None and workers > 1:
        raise click.UsageError("--workers and --scheduler exclude each other: the "
                               "cluster's workers run the rows")
    try:
        check_output_folder(out_dir, create=False)  # before any model is loaded
        options = {"device": device, "overlap": overlap,
                   "tile_size": None if whole else (tile_size or "auto"), "seed": seed,
                   "parallel": tile_threads if tile_threads > 1 else False}
        if self_ensemble:
            options["self_ensemble"] = True
        enhancer = Enhancer.open(model, scale=scale, n_samples=n_samples, steps=steps,
                                 **options)
        if scale is not None and enhancer.scale != scale:
            raise ValueError(f"{model} is a x{enhancer.scale} model; --scale {scale} applies "
                             "to the bilinear/bicubic baselines")
        if task == "denoise" and enhancer.scale != 1:
            raise ValueError(f"{model} is a x{enhancer.scale} super-resolution model; "
                             "denoise needs a denoiser (scale 1), e.g. raunet-denoise; "
                             "use `lensenhance enhance` to super-resolve")
        source = catalog if catalog is not None else catalog_from_files(files)
        # Files keep their historical names, <stem>_<model>.fits.
        suffix = "" if catalog is not None else "_" + enhancer.name.replace(" ", "_")
        result = enhance_catalog(source, out_dir, enhancer=enhancer, path_column=path_column,
                                 key_column=key_column, hdu=_hdu(hdu), suffix=suffix,
                                 allow_outside=allow_outside, overwrite=overwrite,
                                 workers=workers, scheduler=scheduler, plot=plot, task=task,
                                 progress=ctx.obj["progress"])
    except (OSError, ValueError, TypeError) as error:
        _fail(str(error))
    _report_run(task, result)


def _report_run(task, result, *, shown=20):
    """The summary of a catalog run; non-zero exit when a row failed."""
    failures = list(result["failures"].items())
    for key, reason in failures[:shown]:
        click.echo(f"{key}: error: {reason}", err=True)
    if len(failures) > shown:
        click.echo(f"... and {len(failures) - shown} more failed row(s): see the status "
                   f"and error columns of {result['catalog']}", err=True)
    click.echo(f"{task}: {result['ok']} of {result['n']} row(s) ok ({result['done']} now, "
               f"{result['skipped']} already done), {result['failed']} failed, "
               f"{result['seconds']:.1f} s: {result['catalog']}")
    if result["warnings"]:
        click.echo(f"{result['warnings']} row(s) with warnings: see the warning column of "
                   f"{result['catalog']}", err=True)
    if result["failed"] or result["pending"]:
        _fail(f"{result['failed']} of {result['n']} row(s) failed (see the error column "
              f"of {result['catalog']}); the same command retries the failed rows")


@click.command("enhance")
@click.option("--model", default="bicubic", show_default=True,
              help="A pretrained model name (see `lensenhance models`), bilinear/bicubic, or "
                   "a weights file written by lensenhance.nn.export_weights.")
@click.option("--scale", type=click.IntRange(2), default=None,
              help="Scale of the bilinear/bicubic baselines [default: 2].")
@_enhancement_options
@click.pass_context
def enhance_command(ctx, model, scale, **options):
    """Enhance FITS images (FILES or a --catalog): one output per row, resumable.

    Outputs keep the unit, every WCS, mask and uncertainty; each is written atomically.
    A rerun skips the rows already done; a failing row is reported and the others go
    on (exit status 1 when any failed). A diffusion model (diffusion-sr-x2 ...) writes
    its posterior mean and, in the UNCERT HDU, the calibrated per-pixel standard
    deviation of its samples.
    """
    _run_enhancement(ctx, "enhance", model=model, scale=scale, **options)


@click.command("denoise")
@click.option("--model", required=True,
              help="A denoiser: a shipped one (raunet-denoise, diffusion-denoise, "
                   "diffusion-denoise-hsc; see `lensenhance models --task denoise`) or a "
                   "weights file.")
@_enhancement_options
@click.pass_context
def denoise_command(ctx, model, **options):
    """Denoise FITS images (FILES or a --catalog): one output per row, resumable.

    The same run as `enhance` with a denoiser (scale 1); a diffusion denoiser writes its
    posterior mean and its calibrated per-pixel standard deviation (UNCERT).
    """
    _run_enhancement(ctx, "denoise", model=model, scale=None, **options)


@click.command("models")
@click.option("--task", type=click.Choice(["sr", "denoise", "posterior", "generate", "classify",
                                           "features"]),
              default=None, help="Only the models of this task.")
def models_command(task):
    """List the pretrained models shipped with the package, one section per task."""
    from .models import TASKS, list_pretrained, model_card

    def figure(metrics, key, label, fmt, unit=""):
        value = metrics
        for part in key.split("."):  # nested figures: "calibration_light.coverage_68"
            value = value.get(part) if isinstance(value, dict) else None
        error = ""
        if isinstance(value, dict) and "mean" in value:  # a mean with its standard error
            error = f" +- {value['se']:{fmt}}" if isinstance(value.get("se"), float) else ""
            value = value["mean"]
        elif isinstance(metrics.get(f"{key}_sem"), float):  # residual SR cards
            error = f" +- {metrics[f'{key}_sem']:{fmt}}"
        if not isinstance(value, (int, float)):
            return None
        floor = metrics.get(f"{key}_floor")  # generators: the real-vs-real distance
        return f"{label} {value:{fmt}}{error}{unit}" + (
            f" (floor {floor:{fmt}})" if isinstance(floor, (int, float)) else "")

    # each task's own figures: (metrics key, label, format[, unit])
    shown = {"sr": [("psnr", "PSNR", ".2f", " dB"), ("ssim", "SSIM", ".4f")],
             "denoise": [("psnr", "PSNR", ".2f", " dB"), ("ssim", "SSIM", ".4f")],
             "posterior": [("psnr", "PSNR", ".2f", " dB"),
                           ("calibration_light.coverage_68", "68% coverage", ".3f"),
                           ("calibration_light.coverage_95", "95% coverage", ".3f")],
             "generate": [("fd", "FD", ".4g"), ("kid", "KID", ".3g")],
             "classify": [("accuracy", "accuracy", ".3f")],
             "features": [("theta_e_mae_arcsec", "theta_E MAE", ".4f", '"')]}
    names = list_pretrained(task=task)
    if not names:
        click.echo(f"no pretrained {task + ' ' if task else ''}models installed")
    cards = {name: model_card(name) for name in names}
    for section in TASKS if task is None else (task,):
        members = [name for name, card in cards.items() if card.get("task") == section]
        if not members:
            continue
        click.echo(f"[{section}]")
        for name in members:
            card = cards[name]
            metrics = card.get("metrics") or {}
            figures = [f for f in (figure(metrics, *spec) for spec in shown[section]) if f]
            if "n" in metrics:
                figures.append(f"n={metrics['n']}")
            scaled = section in ("sr", "denoise", "posterior")
            where = f"x{card.get('scale', 1)}" if scaled else card.get("architecture", "")
            click.echo(f"  {name:<22}{where:<13}{card.get('preset', ''):<14}"
                       + ", ".join(figures))


# -- generate -----------------------------------------------------------------------------

@click.command("generate")
@click.option("-n", "n_images", type=click.IntRange(1), default=16, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--model", default="ddpm-lens64", show_default=True,
              help="A shipped generator (see `lensenhance models --task generate`) or a "
                   "weights file written by `lensenhance train ddpm`.")
@click.option("--steps", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--sampler", type=click.Choice(["ddim", "dpm", "ddpm"]), default="ddim",
              show_default=True)
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Run seed (default: fresh, recorded in the catalog).")
@click.option("--substructure", type=click.Choice(["no_sub", "cdm", "axion"]), default=None,
              help="Class of every image (default: the classes in turn).")
@click.option("--guidance", type=click.FloatRange(0), default=None,
              help="Classifier-free guidance weight (default: conditional only).")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--enhancer", default=None,
              help="A super-resolution model for the generator's grid, e.g. edsr-lens64-x2.")
@click.option("--gif", is_flag=True, help="Also draw the reverse process as a GIF.")
@click.option("--device", default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Regenerate and replace every image.")
@click.pass_context
def generate_command(ctx, n_images, out_dir, model, steps, sampler, seed, substructure,
                     guidance, batch_size, enhancer, gif, device, overwrite):
    """Generate lensing images with a diffusion model; FITS files and a catalog."""
    from ._runfolder import check_output_folder
    from .generate import Generator, generate_to_disk

    try:
        check_output_folder(out_dir, create=False)  # before the model is loaded
        if Path(model).suffix == ".safetensors":
            generator = Generator.from_weights(model, device=device)
        else:
            generator = Generator.from_pretrained(model, device=device)
        result = generate_to_disk(out_dir, generator, n_images, steps=steps, sampler=sampler,
                                  seed=seed, substructure=substructure, guidance=guidance,
                                  batch_size=batch_size, enhancer=enhancer, gif=gif,
                                  overwrite=overwrite, progress=ctx.obj["progress"])
    except (OSError, ValueError) as error:
        _fail(str(error))
    click.echo(f"wrote {len(result['written'])} image(s) to {out_dir} "
               f"({result['skipped']} already there), seed {result['seed']}: "
               f"{result['catalog']}" + (f", {result['gif']}" if result["gif"] else ""))


# -- benchmark ----------------------------------------------------------------------------

@click.group("benchmark")
def benchmark_group():
    """Benchmarks that print figures and write JSON."""


@click.command("speed")
@click.option("--part", type=click.Choice(["simulate", "enhance"]), default="simulate",
              show_default=True)
@click.option("-n", "n_images", type=click.IntRange(1), default=2000, show_default=True,
              help="Images per simulation run (--part simulate).")
@click.option("--size", type=click.IntRange(64), default=1024, show_default=True,
              help="Image side for whole vs tiled and dask (--part enhance).")
@click.option("--memory-size", type=click.IntRange(0), default=4096, show_default=True,
              help="FITS side for the command line's peak memory (0: skip).")
@click.option("--model", default="edsr-x2", show_default=True, help="--part enhance model.")
@click.option("--repeats", type=click.IntRange(1), default=2, show_default=True)
@click.option("--no-seams", is_flag=True,
              help="Skip the seam measurements of networks with global operations.")
@click.option("--note", default=None, help="Recorded in the JSON (e.g. other load).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.pass_context
def benchmark_speed_command(ctx, part, n_images, size, memory_size, model, repeats, no_seams,
                            note, json_path):
    """Speed: simulation images/s, or the enhancement engine (tiles, dask, memory, seams)."""
    if part == "enhance":
        from .benchmark.speed import SEAM_RUNS, benchmark_enhance

        benchmark_enhance(size=size, model=model, repeats=repeats,
                          memory_size=memory_size or None, json_path=json_path, note=note,
                          seams=() if no_seams else SEAM_RUNS, command=_command_line(ctx))
        return
    from .benchmark.speed import benchmark_simulate

    benchmark_simulate(n=n_images, json_path=json_path)


@click.command("sr")
@click.option("-n", "n_images", type=click.IntRange(3), default=1000, show_default=True,
              help="Held-out images (classes in equal parts).")
@click.option("--scale", type=click.Choice(["2", "4"]), default="2", show_default=True)
@click.option("--model", "models", multiple=True,
              help="Pretrained model(s) to include (default: all of this scale).")
@click.option("--no-self-ensemble", is_flag=True, help="Skip the D4 self-ensemble rows.")
@click.option("--no-regression", is_flag=True, help="Skip the downstream theta_E regression.")
@click.option("--regression-seeds", type=click.IntRange(1), default=3, show_default=True,
              help="Repeats of the theta_E regression (split and initialisation).")
@click.option("--preset", default="model_i", show_default=True,
              type=click.Choice(["model_i", "model_ii", "model_iii"]))
@click.option("--lr-on-preset-grid", is_flag=True,
              help="LR images on the preset's own grid, HR scale times finer.")
@click.option("--noise-free-lr", is_flag=True, help="LR = HR binned, without noise.")
@click.option("--n-samples", type=click.IntRange(2), default=16, show_default=True,
              help="Posterior samples per image of diffusion models (--model diffusion-sr-x2).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.pass_context
def benchmark_sr_command(ctx, n_images, scale, models, no_self_ensemble, no_regression,
                         regression_seeds, preset, lr_on_preset_grid, noise_free_lr, n_samples,
                         workers, json_path):
    """Super-resolution: MSE/PSNR/SSIM of every model and baseline, and theta_E regression."""
    from .benchmark.sr import benchmark_sr

    benchmark_sr(n=n_images, scale=int(scale), models=list(models) or None, preset=preset,
                 lr_on_preset_grid=lr_on_preset_grid, noise_free_lr=noise_free_lr,
                 self_ensemble=not no_self_ensemble, regression=not no_regression,
                 regression_seeds=regression_seeds, n_samples=n_samples, workers=workers,
                 json_path=json_path,
                 progress=ctx.obj["progress"], command=_command_line(ctx))


@click.command("generate")
@click.option("-n", "n_images", type=click.IntRange(4), default=1000, show_default=True,
              help="Images per row and per simulated comparison set.")
@click.option("--n-ddpm", type=click.IntRange(4), default=None,
              help="Images for rows of more than 100 steps (default -n).")
@click.option("--model", default="ddpm-lens64", show_default=True,
              help="A shipped generator or a weights file.")
@click.option("--classifier", default="lens-classifier", show_default=True,
              help="A shipped classifier or a weights file (its features measure images).")
@click.option("--samplers", default="ddpm:1000,ddim:50,dpm:20", show_default=True,
              help="Rows as sampler:steps pairs.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--no-memorisation", is_flag=True, help="Skip the memorisation check.")
@click.option("--tstr-epochs", type=click.IntRange(0), default=15, show_default=True,
              help="Epochs of the train-on-generated classifiers (0: skip).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.pass_context
def benchmark_generate_command(ctx, n_images, n_ddpm, model, classifier, samplers,
                               batch_size, no_memorisation, tstr_epochs, seed, workers,
                               json_path):
    """FD/KID vs the real-vs-real floor, TSTR accuracy, memorisation, time per image."""
    from .benchmark.generate import benchmark_generate, format_generate_table

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
                                    workers=workers, progress=ctx.obj["progress"],
                                    command=_command_line(ctx))
    except (OSError, ValueError) as error:
        _fail(str(error))
    click.echo(format_generate_table(result))


@click.command("denoise")
@click.option("-n", "n_images", type=click.IntRange(2), default=100, show_default=True,
              help="Held-out images (at most this many HSC 'val' pairs with --real).")
@click.option("--model", "models", multiple=True,
              help="A shipped model or weights file (repeat; default: the shipped "
                   "denoisers for the set).")
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
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
@click.pass_context
def benchmark_denoise_command(ctx, n_images, models, real_dir, n_samples, steps, n_tune,
                              plot_dir, workers, json_path, overwrite):
    """Denoising: posterior mean PSNR/SSIM, calibration and fine-scale power of every denoiser."""
    from .benchmark import write_json
    from .benchmark.denoise import benchmark_denoise, format_denoise_table
    from .models import list_pretrained

    if json_path is not None and json_path.exists() and not overwrite:
        _fail(f"{json_path} exists (use --overwrite)")
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
        _fail(str(error))
    result["command"] = _command_line(ctx)
    click.echo(format_denoise_table(result))
    if json_path is not None:
        write_json(result, json_path)


@click.command("evaluate")
@click.option("--pred", type=click.Path(path_type=Path), required=True,
              help="The --out folder (or catalog.ecsv) of an enhance/denoise run, or a "
                   "folder of predicted FITS images.")
@click.option("--truth", type=click.Path(path_type=Path), required=True,
              help="A catalogue (e.g. the simulator's catalog.ecsv) or a folder of true "
                   "FITS images with the predictions' file names.")
@click.option("--truth-column", default=None,
              help="The catalogue's column of true images [default: hr_path when present, "
                   "else path].")
@click.option("--allow-outside", is_flag=True,
              help="Accept truth paths outside the catalogue's folder.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write n, per-image rows and the summary as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
@click.pass_context
def evaluate_command(ctx, pred, truth, truth_column, allow_outside, json_path, overwrite):
    """MSE, PSNR and SSIM (data_range = truth range) of your predictions against truths.

    An enhance/denoise run's rows are matched with the truth catalogue's rows through
    their input paths; folders are matched by file name. Exit status 1 when an image
    could not be scored.
    """
    from .demo import format_table
    from .evaluation import evaluate_catalog

    try:
        result = evaluate_catalog(pred, truth, truth_column=truth_column,
                                  allow_outside=allow_outside, json_path=json_path,
                                  overwrite=overwrite, progress=ctx.obj["progress"])
    except (OSError, ValueError) as error:
        _fail(str(error))
    click.echo(format_table(result["summary"], title=f"{result['n']} images"))
    failures = list(result["failures"].items())
    for name, reason in failures[:20]:
        click.echo(f"{name}: error: {reason}", err=True)
    if json_path is not None:
        click.echo(f"wrote {json_path}")
    if failures:
        _fail(f"{len(failures)} of {len(failures) + result['n']} image(s) could not be "
              "scored")


# -- train ------------------------------------------------------------------------------

@click.group("train")
def train_group():
    """Train networks (same command under torchrun for several GPUs or machines)."""


# Options that split one run over sessions; the run they build is the same without them.
_SESSION_OPTIONS = ("resume", "overwrite", "max_steps")


def _command_line(ctx):
    """The canonical command that reproduces this invocation, for model cards."""
    # The program name as installed, whatever name this invocation was given.
    words = ["lensenhance", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if param.name in _SESSION_OPTIONS:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Option) and param.is_flag:
            words += [param.opts[-1]] if value else []
        elif isinstance(value, (tuple, list)):  # multiple=True: the option once per value
            for item in value:
                words += [param.opts[-1], str(item)]
        elif value is not None:
            words += [param.opts[-1], str(value)]
    return " ".join(words)


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
              type=click.Choice(["model_i", "model_ii", "model_iii"]),
              help="Simulation preset of the training data.")
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
    from .datasets import training_pairs
    from .models import load_feature_network
    from .training import train_sr

    scale = int(scale)
    loss_weights = _parse_loss(loss)
    try:
        frozen = load_feature_network(feature_net) if loss_weights.get("feature") else None
    except ValueError as error:
        _fail(str(error))
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
            metadata={"command": _command_line(ctx), "data_preset": preset, "data": str(data),
                      "lr_on_preset_grid": lr_on_preset_grid, "noise_free_lr": noise_free_lr})
    except FileExistsError as error:
        _fail(f"{error} (use --resume or --overwrite)")
    except ValueError as error:
        _fail(str(error))
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
    from .training import train_feature_network

    try:
        result = train_feature_network(out_dir, n=n_train, n_val=n_val, epochs=epochs,
                                       preset=preset, seed=seed, data_seed=data_seed,
                                       overwrite=overwrite, progress=ctx.obj["progress"],
                                       metadata={"command": _command_line(ctx)})
    except FileExistsError as error:
        _fail(f"{error} (use --overwrite)")
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
              type=click.Choice(["model_i", "model_ii", "model_iii"]),
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
    from .training.classifier import train_classifier

    try:
        result = train_classifier(out_dir, n=n_train, n_val=n_val, epochs=epochs,
                                  batch_size=batch_size, lr=learning_rate, width=width,
                                  preset=preset, seed=seed, data_seed=data_seed,
                                  workers=workers, device=device, overwrite=overwrite,
                                  progress=ctx.obj["progress"],
                                  metadata={"command": _command_line(ctx)})
    except FileExistsError as error:
        _fail(f"{error} (use --overwrite)")
    if result.get("val_mae"):
        click.echo("mean absolute error on the held-out images: " + ", ".join(
            f"{name} {value:.3g}" for name, value in result["val_mae"].items()))
    click.echo(f"accuracy on {n_val} held-out images: {result['val_accuracy']:.3f}, "
               f"{result['wall_time_s']:.0f} s: {result['weights']}")


@click.command("ddpm")
@click.option("--preset", default="model_ii", show_default=True,
              type=click.Choice(["model_i", "model_ii", "model_iii"]),
              help="Simulation preset of the noise-free training images.")
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
def train_ddpm_command(ctx, preset, n_train, n_val, data_seed, steps, max_steps, batch_size,
                       learning_rate, ema_decay, parameterization, label_dropout, val_every,
                       checkpoint_every, seed, workers, device, out_dir, resume, overwrite):
    """Train the class-conditional lensing-image generator (a DDPM on noise-free images)."""
    from .training.diffusion import train_ddpm

    try:
        history = train_ddpm(
            out_dir=out_dir, preset=preset, n_train=n_train, n_val=n_val,
            data_seed=data_seed, steps=steps, max_steps=max_steps, batch_size=batch_size,
            lr=learning_rate, ema_decay=ema_decay, parameterization=parameterization,
            label_dropout=label_dropout, val_every=val_every,
            checkpoint_every=checkpoint_every, seed=seed, workers=workers, device=device,
            resume=resume, overwrite=overwrite, progress=ctx.obj["progress"],
            metadata={"command": _command_line(ctx)})
    except (FileExistsError, ValueError) as error:
        _fail(str(error))
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


def _given(**values):
    """Keyword arguments whose value was given (None means: the function's default)."""
    return {key: value for key, value in values.items() if value is not None}


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
    from .training.posterior import train_denoiser

    try:
        data = None
        if hsc_dir is not None:
            from .training.posterior import hsc_sets

            data = hsc_sets(hsc_dir)
        history = train_denoiser(
            out_dir=out_dir, n_train=n_train, n_val=n_val, data_seed=data_seed,
            workers=workers, data=data, init=init_weights, max_steps=max_steps,
            batch_size=batch_size, seed=seed, device=device, resume=resume,
            overwrite=overwrite, progress=ctx.obj["progress"],
            metadata={"command": _command_line(ctx)},
            **_given(steps=steps, lr=learning_rate))
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
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
    from .training.posterior import posterior_sets, train_residual_diffusion

    try:
        data, scale = posterior_sets(kind, out_dir=out_dir, hsc_dir=hsc_dir,
                                     progress=ctx.obj["progress"], workers=workers,
                                     n_val=n_val, **_given(n_train=n_train,
                                                           data_seed=data_seed))
        history = train_residual_diffusion(
            out_dir=out_dir, base=base, data=data, scale=scale, init=init_weights,
            max_steps=max_steps, batch_size=batch_size, seed=seed, device=device,
            resume=resume, overwrite=overwrite, progress=ctx.obj["progress"],
            metadata={"command": _command_line(ctx)},
            **_given(steps=steps, lr=learning_rate))
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    val = history["val"][-1]["val_loss"] if history.get("val") else float("nan")
    click.echo(f"step {history['step']}, validation loss {val:.4g}, "
               f"{history['wall_time_s']:.0f} s: {history['weights']}")


# -- registration: every subcommand in one place -----------------------------------------

def _register_commands():
    for command in (info_command, demo_command, simulate_command, enhance_command,
                    denoise_command, generate_command, models_command, evaluate_command):
        cli.add_command(command)
    for command in (benchmark_speed_command, benchmark_sr_command, benchmark_generate_command,
                    benchmark_denoise_command):
        benchmark_group.add_command(command)
    cli.add_command(benchmark_group)
    for command in (train_sr_command, train_features_command, train_classifier_command,
                    train_ddpm_command, train_denoiser_command, train_posterior_command):
        train_group.add_command(command)
    cli.add_command(train_group)


_register_commands()


def main(argv=None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="lensenhance")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
