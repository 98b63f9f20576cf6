"""``python -m cnnkit`` (and ``torchrun -m cnnkit``) run the command line."""

import sys

from cnnkit.cli import main

sys.exit(main())
