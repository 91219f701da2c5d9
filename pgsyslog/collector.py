"""Python's cyclic garbage collector, set for a process that keeps few cycles.

Records, rows and their tuples die young and hold no cycles; with the default
thresholds the collector still runs every 700 allocations and, every 100 of those, walks
every object the process holds (the modules of SQLAlchemy, psycopg, aiohttp and click
are most of them). Once a command has started, what it built so far is moved out of the
collector's sight (gc.freeze) and young collections are made rarer; reference counting
frees the records as before, and the collector still runs, so a cycle is still freed.
"""

from __future__ import annotations

import gc

# Allocations of tracked objects between young collections (default 700): a batch of
# records. The older generations keep their default ratios.
YOUNG_THRESHOLD = 50_000


def settle() -> None:
    """Call once the process has loaded what it runs with (after start-up)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
