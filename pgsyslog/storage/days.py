"""Days of received_at, as partitions and the retention count them (pure; no SQLAlchemy,
so that an import's encoding worker can judge a line's age without loading it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def is_expired(day: date, now: datetime, retention_days: int) -> bool:
    """Whether the whole of ``day`` ended more than retention_days ago (0 keeps all)."""
    return retention_days > 0 and day_start(day + timedelta(days=1)) <= now - timedelta(
        days=retention_days)
