"""``python -m optnets``: the ``optnets`` command."""
import sys

from .cli import main

sys.exit(main())
