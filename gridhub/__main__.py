"""`python -m gridhub` runs the command line."""

from gridhub.cli import main

main()
