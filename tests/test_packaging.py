"""The systemd unit and packaging/install.sh, as an administrator installing pgsyslog meets them.

install.sh runs for real, twice, into a temporary root: first from a copy of this work tree
that calls itself 0.0.1 (the full install: a venv, pip installing every dependency), then
from the work tree (an upgrade in place). `systemd-analyze` rates and verifies the unit
against that root. The last two tests boot a throw-away container (systemd-nspawn over
this machine's /usr, with its own network namespace) and run the installed pgsyslog under
the hardened unit: with its embedded PostgreSQL, receiving on port 514, reloaded and
stopped; and with a bad setting, which must be one journal line and no restart loop.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from system_packages import missing_reason

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
INSTALL_SH = PACKAGING / "install.sh"
UNIT = PACKAGING / "pgsyslog.service"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
NSPAWN = "/usr/bin/systemd-nspawn"
INSTALL_TIMEOUT = 600  # seconds: pip installs every dependency on the first run
OLD_VERSION = "0.0.1"


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def need_systemd_analyze() -> None:
    reason = missing_reason([SYSTEMD_ANALYZE], ["systemd"])
    if reason:
        pytest.skip(reason)


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o7777


# ------------------------------------------------------------------------------ the unit


def unit_settings(text: str) -> dict[str, list[str]]:
    """Each Key= of a unit file with its values in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_rates_2_0_or_lower() -> None:
    need_systemd_analyze()
    result = run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)])
    found = re.search(r"Overall exposure level for pgsyslog\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


@pytest.mark.parametrize(("key", "value"), [
    ("User", "pgsyslog"),
    ("StateDirectory", "pgsyslog"),
    ("ConfigurationDirectory", "pgsyslog"),
    ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
    ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectProc", "invisible"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallFilter", "@system-service"),
    ("LimitNOFILE", "65536"),
    ("ExecReload", "/bin/kill -HUP $MAINPID"),
])
def test_unit_keeps_the_settings_the_issue_asks_for(key: str, value: str) -> None:
    assert value in unit_settings(UNIT.read_text()).get(key, [])


def test_unit_waits_longer_than_shutdown_timeout() -> None:
    from pgsyslog.config import Config

    stop = unit_settings(UNIT.read_text())["TimeoutStopSec"][0]
    assert float(stop.removesuffix("s")) > Config().shutdown_timeout


# ---------------------------------------------------------------------- install.sh, twice


@dataclass(frozen=True)
class Installed:
    root: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    operator_line: str

    @property
    def venv(self) -> Path:
        return self.root / "opt/pgsyslog"

    @property
    def config_dir(self) -> Path:
        return self.root / "etc/pgsyslog"


def old_checkout(destination: Path) -> Path:
    """A copy of this work tree whose pgsyslog says it is OLD_VERSION."""
    shutil.copytree(REPO, destination, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    init = destination / "pgsyslog/__init__.py"
    text = init.read_text()
    assert '__version__ = "' in text
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{OLD_VERSION}"', text))
    return destination


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(["bash", str(INSTALL_SH), "--root", str(root), *extra], timeout=INSTALL_TIMEOUT)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    root = base / "root"
    first = install(root, "--source", str(old_checkout(base / "old-src")))
    assert first.returncode == 0, first.stdout + first.stderr
    operator_line = "# edited by the operator: keep me\n"
    with (root / "etc/pgsyslog/pgsyslog.toml").open("a") as fh:
        fh.write(operator_line)
    second = install(root)
    assert second.returncode == 0, second.stdout + second.stderr
    return Installed(root, first, second, operator_line)


def installed_pgsyslog(installed: Installed) -> list[str]:
    """The installed command, run as the target's /opt/pgsyslog would run it."""
    script = installed.venv / "bin/pgsyslog"
    assert script.read_text().startswith("#!/opt/pgsyslog/bin/python")
    return [str(installed.venv / "bin/python"), str(script)]


def installed_version(installed: Installed) -> str:
    result = run([*installed_pgsyslog(installed), "--version"])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_first_run_installs_the_venv_directories_config_and_unit(installed: Installed) -> None:
    root = installed.root
    assert f"installed pgsyslog {OLD_VERSION}" in installed.first.stdout
    assert "wrote the example configuration" in installed.first.stdout
    assert mode_of(root / "var/lib/pgsyslog") == 0o750
    assert mode_of(installed.config_dir) == 0o750
    assert mode_of(installed.config_dir / "pgsyslog.toml") == 0o640
    assert mode_of(root / "etc/systemd/system/pgsyslog.service") == 0o644
    assert (root / "etc/systemd/system/pgsyslog.service").read_text() == UNIT.read_text()
    sysusers = (root / "etc/sysusers.d/pgsyslog.conf").read_text()
    assert re.search(r"^u pgsyslog ", sysusers, re.MULTILINE)
    tmpfiles = (root / "etc/tmpfiles.d/pgsyslog.conf").read_text()
    assert "d /var/lib/pgsyslog 0750 pgsyslog pgsyslog" in tmpfiles
    assert "z /etc/pgsyslog/pgsyslog.toml 0640 root pgsyslog" in tmpfiles


def test_second_run_upgrades_and_keeps_the_config(installed: Installed) -> None:
    assert f"upgraded pgsyslog {OLD_VERSION} -> " in installed.second.stdout
    assert "kept " in installed.second.stdout
    from pgsyslog import __version__

    assert installed_version(installed) == f"pgsyslog, version {__version__}"
    config = (installed.config_dir / "pgsyslog.toml").read_text()
    assert config.endswith(installed.operator_line)
    example = (installed.config_dir / "pgsyslog.toml.example").read_text()
    assert example == (PACKAGING / "pgsyslog.toml").read_text()


def test_installed_example_config_is_valid(installed: Installed, tmp_path: Path) -> None:
    result = run([*installed_pgsyslog(installed), "check-config", "--config",
                  str(installed.config_dir / "pgsyslog.toml.example"),
                  "--data-dir", str(tmp_path / "data")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration is valid" in result.stdout


def lay_system_parts(root: Path) -> None:
    """What a Debian root has that install.sh does not make: systemd's own units
    (sysinit.target and the rest) and /bin/kill, copied from this machine."""
    units = root / "usr/lib/systemd/system"
    if not units.exists():
        shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("kill") or "/usr/bin/kill", root / "usr/bin/kill")
    for link in ("bin", "lib"):
        if not (root / link).exists():
            (root / link).symlink_to(f"usr/{link}")


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return run([SYSTEMD_ANALYZE, "verify", f"--root={root}",
                str(root / "etc/systemd/system/pgsyslog.service")])


def test_unit_verifies_against_the_installed_root(installed: Installed) -> None:
    need_systemd_analyze()
    lay_system_parts(installed.root)
    result = verify(installed.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pgsyslog" not in result.stdout + result.stderr
    # verify reads the installed layout: without the venv's pgsyslog it fails.
    binary = installed.venv / "bin/pgsyslog"
    binary.rename(binary.with_name("pgsyslog.away"))
    try:
        missing = verify(installed.root)
    finally:
        binary.with_name("pgsyslog.away").rename(binary)
    assert missing.returncode != 0
    assert "/opt/pgsyslog/bin/pgsyslog is not executable" in missing.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--bogus"], "unknown argument '--bogus'"),
    (["--root"], "--root needs a value"),
    (["--source", "/nonexistent", "--version", "1.0"], "give --source or --version, not both"),
])
def test_bad_arguments_are_one_line(args: list[str], says: str) -> None:
    result = run(["bash", str(INSTALL_SH), *args])
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("install.sh: ") and says in result.stderr


def test_a_directory_that_is_not_a_checkout_is_one_line(tmp_path: Path) -> None:
    result = run(["bash", str(INSTALL_SH), "--root", str(tmp_path / "root"),
                  "--source", str(tmp_path)])
    assert result.returncode != 0
    assert result.stderr.strip() == (f"install.sh: {tmp_path} is not a pgsyslog checkout: "
                                     "give --source DIR|FILE or --version X")
    assert not (tmp_path / "root/opt/pgsyslog").exists()


def test_a_pip_failure_is_one_line_naming_the_full_output(tmp_path: Path) -> None:
    broken = tmp_path / "pgsyslog-9.9-py3-none-any.whl"
    broken.write_text("not a zip file")
    result = install(tmp_path / "root", "--source", str(broken))
    assert result.returncode != 0
    line = result.stderr.strip()
    assert line.splitlines() == [line]
    assert line.startswith(f"install.sh: pip install {broken} failed: ERROR: ")
    kept = Path(line.rsplit("(full output: ", 1)[1].rstrip(")"))
    assert "invalid" in kept.read_text()
    kept.unlink()


def test_not_root_without_root_prefix_is_one_line() -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run install.sh as another user")
    result = run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                  "bash", str(INSTALL_SH)])
    if "Permission denied" in result.stderr:
        pytest.skip(f"user nobody cannot read {INSTALL_SH}")
    assert result.returncode != 0
    assert result.stderr.strip() == (f"install.sh: run as root (sudo {INSTALL_SH}), or give "
                                     "--root DIR to install into a directory")


# ------------------------------------------------- the installed pgsyslog under the unit

BOOT_TIMEOUT = 120  # seconds for the container's systemd to finish booting
ROWS_TIMEOUT = 60  # seconds for the two messages to be stored
FAILED_TIMEOUT = 30  # seconds for serve to refuse a bad setting
RESTART_SEC = 5  # the unit's RestartSec=
# The privileged syslog port is the point (CAP_NET_BIND_SERVICE); the container has a
# network namespace of its own, so nothing else on this machine can hold it.
SYSLOG_PORT = 514
APP = "packaging-test"

DROP_IN = f"""[Service]
ExecStart=
ExecStart=/opt/pgsyslog/bin/pgsyslog serve --config /etc/pgsyslog/pgsyslog.toml \
--udp 127.0.0.1:{SYSLOG_PORT} --tcp 127.0.0.1:{SYSLOG_PORT} --http off
"""

# The container's network has no link for a wait-online service to wait for, and the
# unit orders itself after network-online.target.
SET_UP = """set -e
systemctl mask --quiet systemd-networkd-wait-online.service NetworkManager-wait-online.service
systemd-sysusers /etc/sysusers.d/pgsyslog.conf
systemd-tmpfiles --create /etc/tmpfiles.d/pgsyslog.conf
systemctl daemon-reload
systemctl start pgsyslog
"""


class Container:
    """A booted systemd-nspawn container over this machine's /usr (a tmpfs root)."""

    def __init__(self, binds: list[str], log: Path) -> None:
        self.name = f"pgsyslog-test-{uuid.uuid4().hex[:8]}"
        self.log = log
        args = [NSPAWN, "--directory=/", "--volatile=yes", "--private-network",
                "--register=no", "--keep-unit", f"--machine={self.name}", "--boot",
                *(f"--bind-ro={path}" for path in binds), "systemd.firstboot=off"]
        with log.open("w") as out:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT)
        self.leader = self._leader()

    def _leader(self) -> int:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            children = psutil.Process(self.process.pid).children()
            if children:
                return children[0].pid
            time.sleep(0.2)
        return 0

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.leader}/root")

    def sh(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", "-t", str(self.leader), "-a", "/bin/sh", "-c", script],
                   timeout=timeout)

    def booted(self) -> bool:
        if not self.leader:
            return False
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                return True
            time.sleep(1)
        return False

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nspawn shuts the container down
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def container(installed: Installed, tmp_path: Path) -> Iterator[Container]:
    if os.geteuid() != 0:
        pytest.skip("systemd-nspawn needs root")
    reason = missing_reason([NSPAWN, "nsenter"], ["systemd-container", "util-linux"])
    if reason:
        pytest.skip(reason)
    box = Container([f"{installed.venv}:/opt/pgsyslog"],
                    tmp_path / "nspawn.log")
    try:
        if not box.booted():
            tail = box.log.read_text(errors="replace")[-600:]
            pytest.skip(f"systemd-nspawn could not boot a container here: {tail!r}")
        yield box
    finally:
        box.close()


def lay_unit_in(box: Container, installed: Installed) -> None:
    """The files install.sh wrote, into the container's /etc (a tmpfs of its own)."""
    etc = box.root / "etc"
    for part in ("systemd/system/pgsyslog.service", "sysusers.d/pgsyslog.conf",
                 "tmpfiles.d/pgsyslog.conf"):
        (etc / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(installed.root / "etc" / part, etc / part)
    drop_in = etc / "systemd/system/pgsyslog.service.d/ports.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text(DROP_IN)
    (etc / "pgsyslog").mkdir()
    shutil.copy2(installed.config_dir / "pgsyslog.toml.example", etc / "pgsyslog/pgsyslog.toml")


def stored_messages(box: Container) -> list[dict[str, object]]:
    result = box.sh(as_pgsyslog("/opt/pgsyslog/bin/pgsyslog search --data-dir "
                                f"/var/lib/pgsyslog --app {APP} --output json"))
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def wait_for_messages(box: Container, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + ROWS_TIMEOUT
    rows = stored_messages(box)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(1)
        rows = stored_messages(box)
    return rows


JIT_AVAILABLE = """set -e
dsn=$(/opt/pgsyslog/bin/pgsyslog dsn --data-dir /var/lib/pgsyslog)
/opt/pgsyslog/bin/python -c 'import sys, psycopg
print(psycopg.connect(sys.argv[1]).execute("SELECT pg_jit_available()").fetchone()[0])' "$dsn"
"""


def as_pgsyslog(script: str) -> str:
    return f"setpriv --reuid=pgsyslog --regid=pgsyslog --clear-groups sh -c {shlex.quote(script)}"


def journal(box: Container) -> str:
    return box.sh("journalctl -u pgsyslog -o cat --no-pager").stdout


def wait_for_database(box: Container) -> None:
    """Until serve says its embedded PostgreSQL is up (the first start runs initdb)."""
    deadline = time.monotonic() + ROWS_TIMEOUT
    while "database: postgresql://" not in journal(box):
        assert time.monotonic() < deadline, journal(box)
        time.sleep(1)


def stop_line(box: Container) -> str:
    return next(line for line in journal(box).splitlines() if " stopped: {" in line)


def process_status(box: Container) -> dict[str, str]:
    pid = box.sh("systemctl show -p MainPID --value pgsyslog").stdout.strip()
    status = (box.root / f"proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)


def test_embedded_postgresql_runs_inside_the_hardened_unit(container: Container,
                                                          installed: Installed) -> None:
    lay_unit_in(container, installed)
    started = container.sh(SET_UP, timeout=120)
    assert started.returncode == 0, started.stderr + journal(container)
    wait_for_database(container)
    for flag in ("-d", "-T"):  # UDP and TCP, both on the privileged port
        sent = container.sh(f"logger -n 127.0.0.1 -P {SYSLOG_PORT} {flag} --rfc5424 "
                            f"-t {APP} 'hello over {flag} from inside the unit'")
        assert sent.returncode == 0, sent.stderr
    rows = wait_for_messages(container, 2)
    assert sorted(str(row["transport"]) for row in rows) == ["tcp", "udp"], journal(container)

    status = process_status(container)
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # the system call filter is on
    assert int(status["CapEff"], 16) == 1 << 10  # CAP_NET_BIND_SERVICE alone
    udp_table = container.sh("nsenter -t $(systemctl show -p MainPID --value pgsyslog) -m "
                             "head -1 /proc/net/udp")  # where kernel_udp_drops comes from
    assert "local_address" in udp_table.stdout, udp_table.stderr
    # MemoryDenyWriteExecute holds because the embedded server cannot JIT-compile.
    jit = container.sh(as_pgsyslog(JIT_AVAILABLE))
    assert jit.stdout.strip() == "False", jit.stdout + jit.stderr
    reload = container.sh("systemctl reload pgsyslog")
    assert reload.returncode == 0, reload.stderr

    stopped = container.sh("systemctl stop pgsyslog; systemctl show -p Result -p NRestarts "
                           "pgsyslog; pgrep -u pgsyslog || echo none-left", timeout=120)
    # PostgreSQL stopped with pgsyslog, which wrote both messages and was not restarted.
    assert set(stopped.stdout.split()) == {"Result=success", "NRestarts=0", "none-left"}, \
        stopped.stdout + journal(container)
    assert "'received': 2," in stop_line(container)
    assert "'written': 2," in stop_line(container)


def test_a_bad_setting_is_one_journal_line_and_no_restart(container: Container,
                                                         installed: Installed) -> None:
    lay_unit_in(container, installed)
    with (container.root / "etc/pgsyslog/pgsyslog.toml").open("a") as fh:
        fh.write("batch_rowz = 5\n")
    container.sh(SET_UP, timeout=120)  # Type=exec: the start itself succeeds
    deadline = time.monotonic() + FAILED_TIMEOUT
    state = ""
    while state != "failed" and time.monotonic() < deadline:
        time.sleep(1)
        state = container.sh("systemctl show -p ActiveState --value pgsyslog").stdout.strip()
    assert state == "failed", journal(container)
    time.sleep(RESTART_SEC + 2)  # when a restart would have come
    shown = container.sh("systemctl show -p ActiveState -p NRestarts -p ExecMainStatus pgsyslog")
    assert set(shown.stdout.split()) == {"ActiveState=failed", "NRestarts=0",
                                         "ExecMainStatus=2"}, journal(container)
    errors = [line for line in journal(container).splitlines() if "batch_rowz" in line]
    assert errors == ["Error: config: batch_rowz: unknown setting"]
    assert "Traceback" not in journal(container)
