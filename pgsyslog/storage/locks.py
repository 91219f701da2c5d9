"""Keys of the session-level advisory locks that keep several receivers from colliding."""

from __future__ import annotations

# Arbitrary but fixed 64-bit keys ("pgsyslog" in ASCII, plus a purpose number).
_BASE = 0x7067_7379_736C_6F00
MIGRATIONS = _BASE + 1
MAINTENANCE = _BASE + 2
