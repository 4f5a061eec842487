"""``python -m oemkit`` runs the CLI."""

from oemkit.cli import main

main()
