"""``python -m dpo_tui.worker.export --plan FILE``: the export as a child process (see :func:`main`)."""

import sys

from . import main

sys.exit(main())
