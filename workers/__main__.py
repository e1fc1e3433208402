"""`python -m workers` is `msgstate`."""

from workers.cli.main import main

main()
