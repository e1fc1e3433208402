"""`python -m workers` is `msgstate`."""

from msgstate.workers.cli.main import main

main()
