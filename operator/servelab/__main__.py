from __future__ import annotations

import sys

from servelab.cli import main

sys.exit(main())
