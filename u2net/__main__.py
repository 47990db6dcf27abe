"""`python -m u2net …`: the command line (see u2net/cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
