"""``python -m lensenhance``: the command line (also under ``torchrun -m lensenhance``)."""

import sys

from .cli import main

sys.exit(main())
