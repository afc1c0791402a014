"""``python -m optnets.recipes``: the training entry point, as ``optnets train``."""

from .train import cli_main

if __name__ == '__main__':
    cli_main()
