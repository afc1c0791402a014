from .train import cli_main

cli_main()
