"""The ``lensenhance`` group and the registration of every subcommand, in one place."""

import logging
import signal
import sys
import threading

import click

from .._version import __version__
from .benchmark import (
    benchmark_denoise_command,
    benchmark_detectability_command,
    benchmark_downstream_command,
    benchmark_generate_command,
    benchmark_group,
    benchmark_speed_command,
    benchmark_sr_command,
)
from .convert import convert_deeplense_command, convert_group
from .images import denoise_command, enhance_command, evaluate_command, info_command
from .models import models_command
from .simulate import demo_command, generate_command, simulate_command
from .train import (
    train_classifier_command,
    train_ddpm_command,
    train_denoiser_command,
    train_distill_command,
    train_features_command,
    train_group,
    train_posterior_command,
    train_sr_command,
)


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


def _register_commands():
    for command in (info_command, demo_command, simulate_command, enhance_command,
                    denoise_command, generate_command, models_command, evaluate_command):
        cli.add_command(command)
    for command in (benchmark_speed_command, benchmark_sr_command, benchmark_generate_command,
                    benchmark_denoise_command, benchmark_detectability_command,
                    benchmark_downstream_command):
        benchmark_group.add_command(command)
    cli.add_command(benchmark_group)
    for command in (train_sr_command, train_features_command, train_classifier_command,
                    train_ddpm_command, train_denoiser_command, train_posterior_command,
                    train_distill_command):
        train_group.add_command(command)
    cli.add_command(train_group)
    convert_group.add_command(convert_deeplense_command)
    cli.add_command(convert_group)


_register_commands()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    """Console-script entry point.

    SIGTERM (a batch scheduler's or ``timeout``'s stop) is handled as Ctrl-C: temporary
    files are removed, a run's catalog and journal are written, and the same command
    resumes.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return cli.main(args=argv, prog_name="lensenhance")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
