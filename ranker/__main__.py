from __future__ import annotations

from ranker.cli import main

raise SystemExit(main())
