"""``python -m fcn``: the ``fcn`` command."""

from .cli import main

raise SystemExit(main())
