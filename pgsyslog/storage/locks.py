"""Keys of the PostgreSQL advisory locks that keep several receivers from colliding."""

from __future__ import annotations

# Arbitrary but fixed 64-bit keys ("pgsyslog" in ASCII, plus a purpose number).
_BASE = 0x7067_7379_736C_6F00
MIGRATIONS = _BASE + 1
MAINTENANCE = _BASE + 2
# First half of the two-int key (PARTITION_DAY, day ordinal) held while one day's
# partition is created or dropped ("pgsy"; two-int keys never meet the 64-bit ones).
PARTITION_DAY = 0x7067_7379
# First half of (LOADING_DAY, day ordinal): held by an import for the whole time it loads
# the free-standing table of that day (partitions.create_detached), so that maintenance
# leaves it alone ("pgsl").
LOADING_DAY = 0x7067_736C
