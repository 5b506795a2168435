"""``python -m coexarchive.testing``: see :mod:`coexarchive.testing.cli`."""

from coexarchive.testing.cli import main

raise SystemExit(main())
