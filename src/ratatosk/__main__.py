"""``python -m ratatosk``: the same as the ``ratatosk`` command."""

from .cli import main

raise SystemExit(main())
