"""pgsyslog: a syslog receiver that stores every message in day-partitioned PostgreSQL."""

__version__ = "0.1.0"
