"""Commands over FITS images: ``info``, ``enhance``, ``denoise`` and ``evaluate``."""

from pathlib import Path

import click

from ._common import fail, parse_hdu

# -- info ---------------------------------------------------------------------------------

@click.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--hdu", default=None, help="HDU index or name (default: first 2-D image).")
def info_command(files, hdu):
    """Print shape, dtype, unit, WCS centre, pixel scale and NaN count of FITS images."""
    from ..io import describe_image

    failures = 0
    for path in files:
        try:
            summary = describe_image(path, hdu=parse_hdu(hdu))
        except (OSError, ValueError, TypeError, KeyError) as error:
            text = str(error)  # the package's errors start with the file's name
            click.echo(f"error: {text if text.startswith(str(path)) else f'{path}: {text}'}",
                       err=True)
            failures += 1
            continue
        click.echo(f"{path}:")
        for key, value in summary.items():
            click.echo(f"  {key:<12} {value}")
    if failures:
        fail(f"{failures} of {len(files)} file(s) could not be read")


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
        click.option("--rows-per-pass", type=click.IntRange(1), default=None,
                     help="Rows whose tiles share the model's forward passes [default: "
                          "8 for a diffusion posterior, else 1]; the outputs are the same."),
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
                     help="Sampler steps of a diffusion model [default: the model's; "
                     "a distilled (-fast) one takes 1, 2 or 4]."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--hdu", default=None, help="HDU index or name of the inputs."),
        click.option("--plot", is_flag=True,
                     help="Also write a PNG panel per row (input, mean, std) in OUT/plots."),
        click.option("--overwrite", is_flag=True,
                     help="Redo every row and replace its output (default: a rerun "
                          "skips the rows already done)."),
        click.option("--outlier-threshold", type=click.FloatRange(0, min_open=True),
                     default=None,
                     help="The model's range, in normalisation scales: brighter pixels "
                          "are interpolated (flux kept) and masked [default: 50]."),
        click.option("--cosmic-rays/--no-cosmic-rays", default=True, show_default=True,
                     help="Find cosmic rays and hot pixels (L.A.Cosmic + a PSF "
                          "sharpness test) and mask them."),
        click.option("--psf-fwhm", type=click.FloatRange(0, min_open=True), default=None,
                     help="The inputs' PSF FWHM in arcsec [default: the header's "
                          "PSF_FWHM/SEEING, else the model's]."),
        click.option("--resample-to-model", is_flag=True,
                     help="Reproject each input onto the model's pixel scale, enhance, "
                          "and bring the result back to the input's grid."),
    ]):
        function = option(function)
    return function


def _run_enhancement(ctx, task, *, files, catalog, path_column, key_column, allow_outside,
                     model, scale, out_dir, workers, scheduler, rows_per_pass, self_ensemble,
                     tile_size, whole, overlap, tile_threads, device, n_samples, steps, seed,
                     hdu, plot, overwrite, outlier_threshold, cosmic_rays, psf_fwhm,
                     resample_to_model):
    """What `enhance` and `denoise` run: check, build the model, run the rows, report."""
    from .._runfolder import check_output_folder
    from ..enhance.catalog import catalog_from_files, enhance_catalog
    from ..enhance.enhancer import Enhancer

    if bool(files) == (catalog is not None):
        raise click.UsageError("give FITS files or --catalog CATALOG (one of the two)")
    if whole and tile_size is not None:
        raise click.UsageError("--whole and --tile-size exclude each other: --whole runs "
                               "each image in one pass")
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
        if outlier_threshold is not None:
            options["outlier_threshold"] = outlier_threshold
        options.update(cosmic_rays=cosmic_rays, psf_fwhm=psf_fwhm,
                       resample="model" if resample_to_model else None)
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
                                 key_column=key_column, hdu=parse_hdu(hdu), suffix=suffix,
                                 allow_outside=allow_outside, overwrite=overwrite,
                                 workers=workers, scheduler=scheduler, plot=plot, task=task,
                                 rows_per_pass=rows_per_pass, progress=ctx.obj["progress"])
    except (OSError, ValueError, TypeError) as error:
        fail(str(error))
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
        fail(f"{result['failed']} of {result['n']} row(s) failed (see the error column "
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
    their input paths; folders are matched by file name. Masked and NaN pixels (those
    an enhanced image has no value for) are left out and counted. Exit status 1 when an
    image could not be scored.
    """
    from ..enhance.evaluation import evaluate_catalog, format_metrics_table

    try:
        result = evaluate_catalog(pred, truth, truth_column=truth_column,
                                  allow_outside=allow_outside, json_path=json_path,
                                  overwrite=overwrite, progress=ctx.obj["progress"])
    except (OSError, ValueError) as error:
        fail(str(error))
    click.echo(format_metrics_table(result["summary"], title=f"{result['n']} images"))
    if result["n_masked"]:
        click.echo(f"left out {result['n_masked']} masked pixel(s) in "
                   f"{result['n_masked_images']} image(s) (masked or NaN: no value to "
                   "score); every other pixel is scored")
    failures = list(result["failures"].items())
    for name, reason in failures[:20]:
        click.echo(f"{name}: error: {reason}", err=True)
    if json_path is not None:
        click.echo(f"wrote {json_path}")
    if failures:
        fail(f"{len(failures)} of {len(failures) + result['n']} image(s) could not be "
              "scored")
