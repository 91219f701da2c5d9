"""The shared parser corpus (tests/data/conformance, a copy of ../shared/conformance).

Each case runs through ``parse_message`` as its own test, judged by check.py's own
comparison; then check.py runs once against the real ``pgsyslog parse`` command.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pgsyslog.receiver.parsers import parse_message
from pgsyslog.record import ParseContext, record_fields

CONFORMANCE = Path(__file__).parent / "data" / "conformance"


def _load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_check", CONFORMANCE / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_check()
CASES = check.load_cases(CONFORMANCE / "cases.jsonl")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Any) -> None:
    ctx = ParseContext(
        received_at=check.parse_instant(case.received_at).astimezone(UTC),
        default_tz=ZoneInfo(case.default_tz),
    )
    record = parse_message(case.data, ctx)
    assert record is not None
    printed = json.loads(json.dumps(record_fields(record), ensure_ascii=False))
    assert check.check_case(case, printed) == [], case.note


def test_check_py_against_the_cli() -> None:
    command = shlex.join([sys.executable, "-m", "pgsyslog", "parse"])
    proc = subprocess.run(
        [sys.executable, str(CONFORMANCE / "check.py"), "--cmd", command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary == f"{len(CASES)} passed, 0 failed"
