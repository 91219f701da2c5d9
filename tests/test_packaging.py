"""The systemd unit and packaging/install.sh, as an administrator installing pgsyslog meets them.

install.sh runs for real, twice, into a temporary root: first from a copy of this work tree
that calls itself 0.0.1 (the full install: a venv, pip installing every dependency), then
from the work tree (an upgrade in place). `systemd-analyze` rates and verifies the unit
against that root. Installs into roots with a space or a long path must still run at
/opt/pgsyslog (mounted there, the build root hidden); an install as user nobody shows which
files of a checkout are copied; a bad source is refused before anything is made.
The last tests boot a throw-away container (systemd-nspawn over this machine's /usr, with
its own network namespace and cgroup) and run the installed pgsyslog under the hardened
unit: with its embedded PostgreSQL, receiving on port 514, reloaded and stopped; and with a
bad setting, which must be one journal line and no restart loop. Each container test has
one time budget and leaves no process, cgroup or directory behind, even when nspawn itself
was killed (test_a_container_whose_nspawn_was_killed_leaves_nothing).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import zipfile
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
SETPRIV = "/usr/bin/setpriv"
INSTALL_TIMEOUT = 600  # seconds: pip installs every dependency on the first run
OLD_VERSION = "0.0.1"


def run(args: list[str], timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


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


NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".*_cache", ".hypothesis")


def old_checkout(destination: Path) -> Path:
    """A copy of this work tree whose pgsyslog says it is OLD_VERSION."""
    shutil.copytree(REPO, destination, ignore=NOT_COPIED)
    init = destination / "pgsyslog/__init__.py"
    text = init.read_text()
    assert '__version__ = "' in text
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{OLD_VERSION}"', text))
    return destination


def install(root: Path, *extra: str, temp: Path) -> subprocess.CompletedProcess[str]:
    """install.sh --root ROOT, with its work directory and any kept log in temp."""
    temp.mkdir(exist_ok=True)
    return run(["bash", str(INSTALL_SH), "--root", str(root), *extra], timeout=INSTALL_TIMEOUT,
               env={**os.environ, "TMPDIR": str(temp)})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    root = base / "root"
    first = install(root, "--source", str(old_checkout(base / "old-src")), temp=base / "tmp")
    assert first.returncode == 0, first.stdout + first.stderr
    operator_line = "# edited by the operator: keep me\n"
    with (root / "etc/pgsyslog/pgsyslog.toml").open("a") as fh:
        fh.write(operator_line)
    second = install(root, temp=base / "tmp")
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


# Run as the target runs it: in a mount namespace of its own, the venv mounted at
# /opt/pgsyslog and the directory it was built in covered by an empty tmpfs.
AS_TARGET = """set -e
mount -t tmpfs tmpfs /opt
mkdir /opt/pgsyslog
mount --bind "$1" /opt/pgsyslog
mount -t tmpfs tmpfs "$2"
shift 2
exec "$@"
"""


def need_mount_namespace() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount the venv at /opt/pgsyslog in a mount namespace")
    reason = missing_reason(["unshare"], ["util-linux"])
    if reason:
        pytest.skip(reason)


def run_as_target(venv: Path, build_dir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return run(["unshare", "--mount", "sh", "-c", AS_TARGET, "sh", str(venv), str(build_dir),
                *command])


def files_naming(directory: Path, text: str) -> list[str]:
    """Files below directory that contain text (bytecode aside: Python sets its paths anew
    when it loads it)."""
    needle = os.fsencode(text)
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*")
                  if path.is_file() and not path.is_symlink()
                  and "__pycache__" not in path.parts and needle in path.read_bytes())


def assert_runs_as_target(root: Path) -> None:
    venv = root / "opt/pgsyslog"
    assert files_naming(venv, str(root)) == []
    first_lines = {path.name: path.read_bytes().split(b"\n", 1)[0]
                   for path in (venv / "bin").iterdir()
                   if not path.is_symlink() and path.read_bytes().startswith(b"#!")}
    assert {"pgsyslog", "pip"} <= first_lines.keys()
    assert all(line.startswith(b"#!/opt/pgsyslog/bin/python") for line in first_lines.values()), \
        first_lines
    for command, says in (("pgsyslog", "pgsyslog, version "), ("pip", " from /opt/pgsyslog/")):
        ran = run_as_target(venv, root.parent, f"/opt/pgsyslog/bin/{command}", "--version")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert says in ran.stdout


def test_installed_scripts_run_where_the_root_is_mounted(installed: Installed) -> None:
    need_mount_namespace()
    assert_runs_as_target(installed.root)


# pip writes "#!/bin/sh" and an exec line naming the build path when that path has a space
# or the interpreter's path is longer than a shebang may be (127 bytes).
@pytest.mark.parametrize("root_name", ["root with space", "long-" + "d" * 120 + "/root"],
                         ids=["space", "long"])
def test_scripts_name_the_target_not_the_build_root(tmp_path: Path, root_name: str) -> None:
    need_mount_namespace()
    root = tmp_path / root_name
    assert " " in str(root) or len(str(root / "opt/pgsyslog/bin/python")) > 127
    result = install(root, temp=tmp_path / "tmp")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_runs_as_target(root)


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
    source = tmp_path / "not-a-checkout"
    source.mkdir()
    result = install(tmp_path / "root", "--source", str(source), temp=tmp_path / "tmp")
    assert result.returncode != 0
    assert result.stderr.strip() == (f"install.sh: {source} is not a pgsyslog checkout: "
                                     "give --source DIR|FILE or --version X")
    assert not (tmp_path / "root").exists()


def zip_of(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def metadata(name: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: 9.9\n"


@pytest.mark.parametrize(("file_name", "content", "says"), [
    ("pgsyslog-9.9-py3-none-any.whl", b"not a zip file", "not a zip archive, as a wheel is"),
    ("pgsyslog-9.9.tar.gz", b"not a tar file", "not a tar archive, as an sdist is"),
    ("pgsyslog-9.9-py3-none-any.whl", zip_of({"pgsyslog/__init__.py": ""}),
     "no .dist-info/METADATA in it"),
    ("other-9.9-py3-none-any.whl", zip_of({"other-9.9.dist-info/METADATA": metadata("other")}),
     "it is the package 'other'"),
    ("pgsyslog.toml", (PACKAGING / "pgsyslog.toml").read_bytes(),
     "its name ends in neither .whl nor .tar.gz"),
], ids=["text-as-wheel", "text-as-sdist", "zip-without-metadata", "other-package", "config"])
def test_a_file_that_is_not_a_pgsyslog_package_makes_nothing(
        tmp_path: Path, file_name: str, content: bytes, says: str) -> None:
    source = tmp_path / file_name
    source.write_bytes(content)
    root, temp = tmp_path / "root", tmp_path / "tmp"
    result = install(root, "--source", str(source), temp=temp)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"install.sh: {source} is not a pgsyslog wheel or sdist: {says}"]
    assert not root.exists()
    assert list(temp.iterdir()) == []  # the work directory went too


def test_a_source_that_does_not_exist_makes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "pgsyslog-9.9-py3-none-any.whl"
    result = install(tmp_path / "root", "--source", str(missing), temp=tmp_path / "tmp")
    assert result.returncode != 0
    assert result.stderr.splitlines() == [f"install.sh: --source {missing} does not exist"]
    assert not (tmp_path / "root").exists()


def test_a_pip_failure_is_one_line_naming_the_full_output(tmp_path: Path) -> None:
    # Named pgsyslog, so install.sh lets it through; without .dist-info/WHEEL pip refuses it.
    broken = tmp_path / "pgsyslog-9.9-py3-none-any.whl"
    broken.write_bytes(zip_of({"pgsyslog-9.9.dist-info/METADATA": metadata("pgsyslog")}))
    result = install(tmp_path / "root", "--source", str(broken), temp=tmp_path / "tmp")
    assert result.returncode != 0
    line = result.stderr.strip()
    assert line.splitlines() == [line]
    assert line.startswith(f"install.sh: pip install {broken} failed: ERROR: ")
    kept = Path(line.rsplit("(full output: ", 1)[1].rstrip(")"))
    assert kept.parent == tmp_path / "tmp"
    assert "invalid wheel" in kept.read_text()


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


# What install.sh leaves out of a checkout it copies (tools rewrite caches while they run).
BUILD_FILES = [".git", ".venv", "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache",
               ".hypothesis", "pgsyslog.egg-info", "pgsyslog/__pycache__"]


@dataclass(frozen=True)
class Unprivileged:
    """A copy of this work tree that user nobody may read, and places nobody may write."""

    work: Path
    user: pwd.struct_passwd

    @property
    def source(self) -> Path:
        return self.work / "src"

    @property
    def root(self) -> Path:
        return self.work / "target/root"

    def install(self) -> subprocess.CompletedProcess[str]:
        home = self.work / "home"
        return run([SETPRIV, f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                    "--clear-groups", "bash", str(INSTALL_SH), "--root", str(self.root),
                    "--source", str(self.source)], timeout=INSTALL_TIMEOUT,
                   env={**os.environ, "HOME": str(home), "TMPDIR": str(home)})

    def root_only_file(self, relative: str) -> None:
        """A file nobody cannot read: tar fails on it as on a cache rewritten under it."""
        path = self.source / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("only root reads this\n")
        path.chmod(0o600)


@pytest.fixture
def unprivileged() -> Iterator[Unprivileged]:
    if os.geteuid() != 0 or not Path(SETPRIV).exists():
        pytest.skip("needs root and setpriv to make files that the installing user cannot read")
    user = pwd.getpwnam("nobody")
    # Under /tmp: nobody cannot enter pytest's tmp_path (0700).
    work = Path(tempfile.mkdtemp(prefix="pgsyslog-packaging-"))
    try:
        work.chmod(0o755)
        shutil.copytree(REPO, work / "src", ignore=NOT_COPIED)
        for writable in ("home", "target"):
            (work / writable).mkdir()
            os.chown(work / writable, user.pw_uid, user.pw_gid)
        yield Unprivileged(work, user)
    finally:
        shutil.rmtree(work)


def test_build_files_and_caches_are_not_copied(unprivileged: Unprivileged) -> None:
    for part in BUILD_FILES:
        unprivileged.root_only_file(f"{part}/root-only")
    result = unprivileged.install()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installed pgsyslog " in result.stdout


def test_a_checkout_that_cannot_be_copied_is_one_line(unprivileged: Unprivileged) -> None:
    unprivileged.root_only_file("pgsyslog/unreadable.py")
    result = unprivileged.install()
    assert result.returncode != 0
    line = result.stderr.strip()
    assert line.splitlines() == [line]
    assert line.startswith(f"install.sh: copying the checkout {unprivileged.source} failed: "
                           "tar: ./pgsyslog/unreadable.py: Cannot open: Permission denied "
                           "(full output: ")
    assert not unprivileged.root.exists()


# ------------------------------------------------- the installed pgsyslog under the unit

BOOT_TIMEOUT = 120  # seconds for the container's systemd to finish booting
ROWS_TIMEOUT = 60  # seconds for the two messages to be stored
FAILED_TIMEOUT = 30  # seconds for serve to refuse a bad setting
RESTART_SEC = 5  # the unit's RestartSec=
# One container test from boot to stop, waits and commands together; with close() it stays
# below pytest's timeout of 300 s.
CONTAINER_BUDGET = 240
SHUTDOWN_TIMEOUT = 30  # seconds for nspawn to shut the container down at the end
KILL_TIMEOUT = 10  # seconds for what is left in the container's cgroups to die
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


def cgroup_mounts() -> dict[str, Path]:
    """Where the hierarchies nspawn uses are mounted: cgroup v2 ('') and v1 name=systemd."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _device, point, fstype, options, *_ = line.split()
        if fstype == "cgroup2":
            mounts.setdefault("", Path(point))
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts["name=systemd"] = Path(point)
    return mounts


def own_cgroups() -> list[Path]:
    """This process's cgroup in each of those hierarchies."""
    mounts = cgroup_mounts()
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _number, controllers, path = line.split(":", 2)
        if controllers in mounts:
            found.append(mounts[controllers] / path.lstrip("/"))
    return found


# The shell moves itself into each cgroup named before "--", then becomes the command after.
JOIN_AND_EXEC = """while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs"; shift; done
shift
exec "$@"
"""


class Container:
    """A booted systemd-nspawn container over this machine's /usr (a tmpfs root).

    nspawn --keep-unit puts the container in the cgroup it starts in (making payload/ and
    supervisor/ below it), so each container gets a cgroup of its own: two at once stay
    apart, and close() can kill whatever is left in it and remove it. Every wait and every
    command inside shares one budget of CONTAINER_BUDGET seconds.
    """

    def __init__(self, log: Path) -> None:
        self.name = f"pgsyslog-test-{uuid.uuid4().hex[:8]}"
        self.log = log
        self.deadline = time.monotonic() + CONTAINER_BUDGET
        self.cgroups = [parent / self.name for parent in own_cgroups()]
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def make_cgroups(self) -> None:
        for cgroup in self.cgroups:
            cgroup.mkdir()

    def start(self, binds: list[str]) -> None:
        args = [NSPAWN, "--directory=/", "--volatile=yes", "--private-network",
                "--register=no", "--keep-unit", f"--machine={self.name}", "--boot",
                *(f"--bind-ro={path}" for path in binds), "systemd.firstboot=off"]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                ["sh", "-c", JOIN_AND_EXEC, "sh", *map(str, self.cgroups), "--", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.leader = self._leader(self.process)

    def remaining(self, limit: float) -> float:
        """Seconds a step may take: limit, or what is left of the budget if less."""
        left = self.deadline - time.monotonic()
        assert left > 0, f"the container test took more than {CONTAINER_BUDGET} s"
        return min(limit, left)

    def _leader(self, process: subprocess.Popen[bytes]) -> int:
        deadline = time.monotonic() + self.remaining(BOOT_TIMEOUT)
        while time.monotonic() < deadline and process.poll() is None:
            children = psutil.Process(process.pid).children()
            if children:
                return children[0].pid
            time.sleep(0.2)
        return 0

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.leader}/root")

    def sh(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", "-t", str(self.leader), "-a", "/bin/sh", "-c", script],
                   timeout=self.remaining(timeout))

    def booted(self) -> bool:
        if not self.leader:
            return False
        deadline = time.monotonic() + self.remaining(BOOT_TIMEOUT)
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                return True
            time.sleep(1)
        return False

    def close(self) -> None:
        """Shut the container down, kill what is left in its cgroups, remove them."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # nspawn shuts the container down
            try:
                self.process.wait(SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(KILL_TIMEOUT)
        deadline = time.monotonic() + KILL_TIMEOUT
        while self.pids_left() and time.monotonic() < deadline:
            for pid in self.pids_left():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for cgroup in self.cgroups:
            for directory, _subdirs, _files in os.walk(cgroup, topdown=False):
                with contextlib.suppress(OSError):  # leftovers() reports what stays
                    os.rmdir(directory)
        with contextlib.suppress(OSError):  # nspawn removes it unless it was killed
            self.propagate_dir.rmdir()

    @property
    def propagate_dir(self) -> Path:
        return Path("/run/systemd/nspawn/propagate") / self.name

    def pids_left(self) -> set[int]:
        pids: set[int] = set()
        for cgroup in self.cgroups:
            for directory, _subdirs, _files in os.walk(cgroup):
                with contextlib.suppress(OSError):  # the container's systemd removes cgroups
                    pids.update(map(int, Path(directory, "cgroup.procs").read_text().split()))
        return pids

    def leftovers(self) -> list[str]:
        """What the container left on this machine after close(): none of it should be."""
        found = [f"pid {pid}" for pid in sorted(self.pids_left())]
        if self.process is not None and self.process.poll() is None:
            found.append(f"systemd-nspawn, pid {self.process.pid}")
        paths = [*self.cgroups, self.propagate_dir]
        return found + [str(path) for path in paths if path.exists()]


@pytest.fixture
def container(installed: Installed, tmp_path: Path) -> Iterator[Container]:
    if os.geteuid() != 0:
        pytest.skip("systemd-nspawn needs root")
    reason = missing_reason([NSPAWN, "nsenter"], ["systemd-container", "util-linux"])
    if reason:
        pytest.skip(reason)
    box = Container(tmp_path / "nspawn.log")
    try:
        box.make_cgroups()
    except OSError as error:
        box.close()
        pytest.skip(f"cannot make a cgroup for the container: {error}")
    try:
        box.start([f"{installed.venv}:/opt/pgsyslog"])
        if not box.booted():
            tail = box.log.read_text(errors="replace")[-600:]
            pytest.skip(f"systemd-nspawn could not boot a container here: {tail!r}")
        yield box
    finally:
        box.close()
    assert box.leftovers() == []


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


def test_a_container_whose_nspawn_was_killed_leaves_nothing(container: Container) -> None:
    assert container.process is not None
    container.process.kill()  # no clean shutdown: the container's own processes stay up
    container.process.wait(KILL_TIMEOUT)
    assert container.pids_left()
    container.close()
    assert container.leftovers() == []
