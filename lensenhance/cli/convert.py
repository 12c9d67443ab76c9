"""The ``convert`` group: published datasets into FITS images and a catalog."""

from pathlib import Path

import click

from ._common import fail


@click.group("convert")
def convert_group():
    """Convert published datasets into FITS images and a catalog."""


@click.command("deeplense")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output folder: one FITS file per image (<class>/<name>.fits, or "
                   "lr/ and hr/ for HR/LR pairs) and catalog.ecsv.")
@click.option("--class", "classes", multiple=True,
              help="Convert only this class (no_sub, cdm, axion or a folder name); "
                   "repeat for several [default: every class folder].")
@click.option("--overwrite", is_flag=True, help="Replace the files of an earlier run.")
@click.pass_context
def convert_deeplense_command(ctx, folder, out_dir, classes, overwrite):
    """Convert a DeepLense dataset folder (.npy files) into FITS images and a catalog.

    FOLDER holds one folder per class (no_sub, cdm, axion; also no_substructure,
    subhalo, vort) or HR/ and LR/ folders of pairs. The catalog's path column is what
    `lensenhance enhance --catalog OUT/catalog.ecsv` reads. The axion files are pickled
    arrays: only convert folders you trust. A file that cannot be read is reported and
    the others are converted (exit status 1 when any failed).
    """
    from ..io.deeplense import convert_deeplense

    try:
        result = convert_deeplense(folder, out_dir, classes=classes or None,
                                   overwrite=overwrite, progress=ctx.obj["progress"])
    except FileExistsError as error:
        fail(f"{error} (use --overwrite)")
    except (OSError, ValueError) as error:
        fail(str(error))
    failures = list(result["failures"].values())
    for reason in failures[:20]:
        click.echo(f"error: {reason}", err=True)
    if len(failures) > 20:
        click.echo(f"... and {len(failures) - 20} more file(s) that could not be read",
                   err=True)
    click.echo(f"convert deeplense: {result['ok']} of {result['n']} "
               f"{'pair' if result['layout'] == 'super_resolution' else 'image'}(s) "
               f"converted, {len(failures)} failed: {result['catalog'] or 'no catalog'}")
    if failures:
        fail(f"{len(failures)} of {result['n']} file(s) could not be converted (listed "
             "above); fix or remove them and rerun with --overwrite")
