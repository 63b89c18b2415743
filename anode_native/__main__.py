"""`python -m anode_native ...` is the `anode` command."""
import sys

from .cli import main

sys.exit(main())
