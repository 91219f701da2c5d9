"""Debian packages a test needs: installed with apt-get when missing, one install at a time.

``missing_reason(paths, packages)`` returns None when every path exists (after installing
``packages`` if some did not), else one sentence saying why the test cannot run. Installs
are serialised with a lock file, so that tests running at once do not fight over dpkg's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

LOCK_FILE = Path("/tmp/pgsyslog-tests-apt.lock")
APT_TIMEOUT = 900  # seconds for one apt-get step; chromium is ~100 MB to fetch


def _all_there(paths: Sequence[str]) -> bool:
    return all(os.path.exists(p) or shutil.which(p) for p in paths)


def missing_reason(paths: Sequence[str], packages: Sequence[str]) -> str | None:
    if _all_there(paths):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"{', '.join(paths)} not installed and apt-get cannot be used "
                f"(not root or no apt) to install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _all_there(paths):
            return None
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
            try:
                done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                      timeout=APT_TIMEOUT)
            except subprocess.TimeoutExpired:
                return f"{' '.join(cmd)} timed out after {APT_TIMEOUT} s"
            if done.returncode != 0:
                return f"apt-get could not install {' '.join(packages)}: " \
                       f"{done.stderr.strip()[-300:]}"
    if not _all_there(paths):
        return f"installing {' '.join(packages)} did not provide {', '.join(paths)}"
    return None
