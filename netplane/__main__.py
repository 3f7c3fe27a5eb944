"""`python -m netplane` runs the CLI (used by the lab to start agents with this interpreter)."""

from netplane.cli.main import main

main()
