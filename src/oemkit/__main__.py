"""``python -m oemkit`` runs the console script (:mod:`oemkit._entry`)."""

from oemkit._entry import main

main()
