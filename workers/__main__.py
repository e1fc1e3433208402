"""`python -m workers` is `msgstate`."""

from workers.cli import main

main()
