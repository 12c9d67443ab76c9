"""The ``lensenhance`` command line: thin click commands over the Python API.

Every command only parses options and calls a function of the package. One module per
group of commands (`~lensenhance.cli.images`, `~lensenhance.cli.simulate`,
`~lensenhance.cli.models`, `~lensenhance.cli.benchmark`, `~lensenhance.cli.train`); all
are registered on the `cli` group in `lensenhance.cli.main`.
"""

from .main import cli, main

__all__ = ["cli", "main"]
