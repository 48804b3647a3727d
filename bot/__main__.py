"""``python -m bot`` is the same as the ``tagrelay`` command."""

from bot.cli import main

raise SystemExit(main())
