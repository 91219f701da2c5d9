"""In-process schedule (APScheduler): partition maintenance and alert evaluation; all jobs
are added here and only here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from pgsyslog.alerts.schedule import AlertRunner
from pgsyslog.config import Config
from pgsyslog.receiver.write_policy import describe
from pgsyslog.storage.maintenance import MaintenanceResult, run_maintenance

log = logging.getLogger(__name__)

# A busy event loop may start a job late; a late run is still worth doing once.
MISFIRE_GRACE_S = 600


class MaintenanceSchedule:
    def __init__(self, dsn: str, config: Config,
                 on_result: Callable[[MaintenanceResult], None]) -> None:
        self.dsn = dsn
        self.config = config
        self.on_result = on_result
        self.alerts = AlertRunner(dsn, config) if config.alert else None
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": MISFIRE_GRACE_S},
        )

    def start(self) -> None:
        interval = self.config.maintenance_interval
        # Runs once right away (start-up already ensured partitions; this drops and drains),
        # then every interval.
        self.scheduler.add_job(self.run, "interval", seconds=interval, id="maintenance",
                               next_run_time=datetime.now(UTC))
        if self.alerts is not None:
            self.scheduler.add_job(self.alerts.run, "interval", id="alerts",
                                   seconds=self.config.alert_interval,
                                   next_run_time=datetime.now(UTC))
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.alerts is not None:
            self.alerts.close()

    async def run(self) -> None:
        try:
            result = await asyncio.to_thread(
                run_maintenance, self.dsn, ahead=self.config.partitions_ahead,
                retention_days=self.config.retention_days)
        except asyncio.CancelledError:
            # serve is stopping; the thread's run ends by itself, its steps are idempotent.
            log.info("maintenance run left unfinished by the stop")
            return
        except psycopg.Error as e:
            # The database is away or refused a step: one line; every step resumes later.
            log.warning("maintenance run failed (%s); the next one is in %ss", describe(e),
                        self.config.maintenance_interval)
            return
        except Exception:
            log.exception("maintenance run failed; the next one is in %ss",
                          self.config.maintenance_interval)
            return
        self.on_result(result)
        log.info("maintenance: %s", result.summary())
