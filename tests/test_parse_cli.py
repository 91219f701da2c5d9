"""`pgsyslog parse`: one JSON object per non-blank input line, in order; flags checked once."""

from __future__ import annotations

import io
import json
import select
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pgsyslog.cli.parse import _line_batches, parse

FIXED = ["--received-at", "2026-11-21T12:00:00Z", "--default-tz", "UTC"]


def run(data: bytes, *args: str) -> Result:
    return CliRunner().invoke(parse, [*FIXED, *args], input=data)


def printed(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_one_object_per_line_in_order_and_blank_lines_print_nothing() -> None:
    data = (
        b"<13>Nov 21 11:59:58 h1 a1: first\n"
        b"\n"
        b"<14>1 2026-11-21T11:59:58Z h2 a2 - - - second\r\n"
        b"   \n"
        b"\r\n"
        b"\x00\n"
        b"2026-11-21T11:59:58Z svc3 INFO third\n"
        b"fourth, just words\n"
        b"<13>Nov 21 11:59:58 h5 a5: fifth, no LF at the end"
    )
    objects = printed(run(data))
    assert [o["message"] for o in objects] == [
        "first", "second", "third", "fourth, just words", "fifth, no LF at the end",
    ]  # fmt: skip
    assert [o["format"] for o in objects] == ["rfc3164", "rfc5424", "custom", "raw", "rfc3164"]


def test_fields_and_json_form() -> None:
    result = run('<165>1 2026-11-21T12:59:58.5+01:00 h app 7 ID [x@1 k="ü"] héllo\n'.encode())
    assert result.stdout == (
        '{"received_at":"2026-11-21T12:00:00+00:00","event_time":"2026-11-21T11:59:58.500000'
        '+00:00","facility":20,"severity":5,"hostname":"h","app_name":"app","procid":"7",'
        '"msgid":"ID","structured_data":{"x@1":{"k":"ü"}},"message":"héllo",'
        '"format":"rfc5424","parse_error":null}\n'
    )


def test_many_lines_keep_their_order() -> None:
    lines = b"".join(b"<13>Nov 21 11:59:58 host app: line %d\n" % i for i in range(20_000))
    objects = printed(run(lines))
    assert [o["message"] for o in objects] == [f"line {i}" for i in range(20_000)]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--default-tz", "Mars/Olympus_Mons"),
        ("--default-tz", "Europe"),
        ("--default-tz", "../../etc/passwd"),
        ("--default-tz", ""),
        ("--received-at", "yesterday"),
    ],
)
def test_bad_flag_value_exits_2_with_one_line(flag: str, value: str) -> None:
    result = CliRunner().invoke(parse, [flag, value], input=b"<13>x\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"Error: Invalid value for '{flag}': {value!r} ")


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("auto", "rfc5424"), ("rfc5424", "rfc5424"), ("rfc3164", "rfc3164"), ("custom", "raw")],
)
def test_format_forcing(fmt: str, expected: str) -> None:
    (obj,) = printed(run(b"<14>1 2026-11-21T11:59:58Z h a - - - m\n", "--format", fmt))
    assert obj["format"] == expected
    assert (obj["parse_error"] is None) == (expected != "raw")


def test_default_tz_applies_to_zoneless_times() -> None:
    args = ["--received-at", "2026-07-04T18:00:00Z", "--default-tz", "America/New_York"]
    result = CliRunner().invoke(parse, args, input=b"<13>Jul  4 13:59:58 h a: x\n")
    assert printed(result)[0]["event_time"] == "2026-07-04T17:59:58+00:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-21T12:00:00", "2026-11-21T12:00:00+00:00"),
        ("2026-11-21T13:00:00+01:00", "2026-11-21T12:00:00+00:00"),
        ("2026-11-21T12:00:00Z", "2026-11-21T12:00:00+00:00"),
    ],
)
def test_received_at_is_utc(value: str, expected: str) -> None:
    result = CliRunner().invoke(parse, ["--received-at", value], input=b"x\n")
    assert printed(result)[0]["received_at"] == expected


def test_defaults_are_now_and_the_local_zone() -> None:
    before = datetime.now(UTC)
    (obj,) = printed(CliRunner().invoke(parse, [], input=b"<13>Nov 21 11:59:58 h a: x\n"))
    received = datetime.fromisoformat(obj["received_at"])
    assert before - timedelta(seconds=1) <= received <= datetime.now(UTC)
    assert obj["event_time"] is not None


class TrickleReader(io.RawIOBase):
    """A raw stream that hands out a few bytes per read, as a pipe or a TTY may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._pos = data, step, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        piece = self._data[self._pos : self._pos + self._step]
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


@pytest.mark.parametrize("step", [1, 3, 7, 64, 1 << 20])
def test_lines_are_reassembled_across_reads(step: int) -> None:
    data = b"a\nbb\r\n\n" + b"x" * 1000 + b"\nlast"
    stream = io.BufferedReader(TrickleReader(data, step), buffer_size=max(step, 8))
    lines = [line for batch in _line_batches(stream) for line in batch]
    assert lines == [b"a", b"bb\r", b"", b"x" * 1000, b"last"]


def test_each_line_is_printed_before_the_next_arrives() -> None:
    """Piping `tail -f` into `pgsyslog parse` shows lines as they come, not at EOF."""
    with subprocess.Popen(
        [sys.executable, "-m", "pgsyslog", "parse", *FIXED],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for i in range(3):
            proc.stdin.write(b"<13>Nov 21 11:59:58 h a: line %d\n" % i)
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "no output while stdin is still open"
            assert json.loads(proc.stdout.readline())["message"] == f"line {i}"
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
