"""``python -m plenrich``."""

from plenrich.main import main

raise SystemExit(main())
