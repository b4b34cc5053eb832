"""``pytest --nbmake notebooks/`` runs every notebook in smoke mode.

The notebooks read ``NBTUNE_SMOKE=1`` to use a tiny budget and a temporary storage (about a
minute each, never resuming an old study). nbmake starts each kernel with this process's
environment, so setting it here, before any kernel starts, reaches them all. Set
``NBTUNE_SMOKE=0`` to run the notebooks at their real budgets instead.
"""

import os

os.environ.setdefault("NBTUNE_SMOKE", "1")
