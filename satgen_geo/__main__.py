"""``python -m satgen_geo`` runs the ``satgen`` command line."""

from satgen_geo.cli import main

main()
