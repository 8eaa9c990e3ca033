"""``python -m dpo_tui.worker.pairs generate --job DIR`` (started detached by ``dpo-tui pairs generate``)."""

import sys

from . import main

sys.exit(main())
