"""At start, the open-files limit is raised to the hard limit; too low a limit is one line."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from pgsyslog.receiver.limits import FD_MARGIN, open_files_warning

CHECK = "from pgsyslog.receiver.limits import check_open_files as c; print(c(1000))"
SOFT_AFTER = ("import resource; from pgsyslog.receiver.limits import raise_open_files_limit as r; "
              "print(r(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")


def run_with_limit(code: str, soft: int, hard: int) -> str:
    """Run code in a Python that starts with these limits, as a service manager would."""
    lower = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))"
    return subprocess.run([sys.executable, "-c", f"{lower}\n{code}"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


@pytest.mark.parametrize(("max_connections", "open_files", "warns"), [
    (1000, 1024, True),
    (1000, 1000 + FD_MARGIN, False),
    (100, 1024, False),
    (10, 100, True),
])
def test_the_warning_says_when_max_connections_does_not_fit(
        max_connections: int, open_files: int, warns: bool) -> None:
    warning = open_files_warning(max_connections, open_files)
    assert (warning is not None) == warns
    if warning is not None:
        assert "\n" not in warning
        assert f"to {max_connections + FD_MARGIN}" in warning


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard < 512:
        pytest.skip(f"hard limit {hard}")
    assert run_with_limit(SOFT_AFTER, 256, hard) == f"{hard} {hard}"
    assert run_with_limit(CHECK, 256, hard) == (
        "None" if hard >= 1000 + FD_MARGIN else open_files_warning(1000, hard))


def test_a_hard_limit_below_max_connections_gives_one_line() -> None:
    line = run_with_limit(CHECK, 300, 300)
    assert line == open_files_warning(1000, 300)
    assert line.startswith("max_connections is 1000 but this process may open only 300 files")
