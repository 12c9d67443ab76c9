"""Commands that make images: ``demo``, ``simulate`` and ``generate``."""

from pathlib import Path

import click

from ..generate.generator import DEFAULT_GENERATOR, MAX_GUIDANCE
from ..simulate.presets import PRESETS
from ._common import fail

PRESET_NAMES = sorted(PRESETS)

# -- demo ---------------------------------------------------------------------------------

@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default="demo_out",
              show_default=True, help="Folder for the FITS files and the figure.")
@click.option("-n", "n_images", type=click.IntRange(1, 64), default=None,
              help="Simulated lenses to super-resolve  [default: 3; 2 with --quick]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quick", is_flag=True,
              help="Fewer images, posterior samples and sampler steps: a smoke test.")
@click.option("--overwrite", is_flag=True, help="Replace files from an earlier run.")
@click.pass_context
def demo_command(ctx, out_dir, n_images, seed, quick, overwrite):
    """Simulate, super-resolve, denoise and generate lenses from the shipped weights.

    Writes the inputs and outputs as FITS and one figure (demo.png) to --out, and prints
    every method's metrics with the number of images they come from.
    """
    import time

    from ..demo import run_demo

    start = time.perf_counter()
    try:
        result = run_demo(out_dir, n_images=n_images, seed=seed, overwrite=overwrite,
                          progress=ctx.obj["progress"], quick=quick)
    except FileExistsError as error:
        fail(f"{error} (use --overwrite)")
    except (OSError, ValueError) as error:
        fail(str(error))
    click.echo(result["table"])
    click.echo(f"\nwrote {len(result['files'])} files to {out_dir} (figure: "
               f"{result['figure']}) in {time.perf_counter() - start:.0f} s")


# -- simulate -----------------------------------------------------------------------------

@click.command("simulate")
@click.option("--preset", default="model_i", show_default=True,
              type=click.Choice(PRESET_NAMES))
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
@click.option("--refit", is_flag=True,
              help="Fill sub_chi2_refit: refit a smooth model to every image with "
                   "substructure (0.1-1 s each).")
@click.option("--overwrite", is_flag=True, help="Start afresh, replacing every file.")
@click.pass_context
def simulate_command(ctx, preset, substructure, n_images, scale, out_dir, fmt, seed, workers,
                     chunk_size, refit, overwrite):
    """Simulate HR/LR lensing pairs with truth catalogues.

    FITS output is written as it goes and resumes: the same command run again after an
    interruption simulates only the missing images (with the same result).
    """
    from .._runfolder import check_output_folder
    from ..simulate.files import simulate_to_disk

    try:
        check_output_folder(out_dir, create=False)
        written = simulate_to_disk(out_dir, preset=preset, substructure=substructure,
                                   n=n_images, scale=int(scale), fmt=fmt, seed=seed,
                                   workers=workers, overwrite=overwrite,
                                   progress=ctx.obj["progress"], chunk_size=chunk_size,
                                   refit=refit)
    except FileExistsError as error:
        fail(f"{error} (use --overwrite)" if "--overwrite" not in str(error) else str(error))
    except (OSError, ValueError) as error:
        fail(str(error))
    click.echo(f"{n_images} {preset}/{substructure} pairs: {written}")


# -- generate -----------------------------------------------------------------------------

@click.command("generate")
@click.option("-n", "n_images", type=click.IntRange(1), default=16, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--model", default=DEFAULT_GENERATOR, show_default=True,
              help="A shipped generator (see `lensenhance models --task generate`) or a "
                   "weights file written by `lensenhance train ddpm`.")
@click.option("--steps", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--sampler", type=click.Choice(["ddim", "dpm", "ddpm"]), default="ddim",
              show_default=True)
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Run seed (default: fresh, recorded in the catalog).")
@click.option("--substructure", type=click.Choice(["no_sub", "cdm", "axion"]), default=None,
              help="Class of every image (default: the classes in turn).")
@click.option("--guidance", type=click.FloatRange(0, MAX_GUIDANCE), default=None,
              help="Classifier-free guidance weight, 0 (unconditional) to 10 "
                   "(default: conditional only).")
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
    from .._runfolder import check_output_folder
    from ..generate.generator import Generator, generate_to_disk

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
    except (OSError, ValueError, FloatingPointError) as error:
        fail(str(error))
    # An earlier run of the same settings may have left more than -n images: all listed.
    held = (f"; the folder holds {result['n_images']} image(s), all in the catalog"
            if result["n_images"] != n_images else "")
    click.echo(f"wrote {len(result['written'])} image(s) to {out_dir} "
               f"({result['skipped']} already there), seed {result['seed']}: "
               f"{result['catalog']}" + (f", {result['gif']}" if result["gif"] else "")
               + held)
