"""``python -m fcn.cli``: the ``fcn`` command."""

from . import main

raise SystemExit(main())
