#!/usr/bin/env bash
# Install (or upgrade in place) pgsyslog as a systemd service:
#   the pgsyslog user and group (sysusers.d), a virtual environment in /opt/pgsyslog,
#   /var/lib/pgsyslog (0750 pgsyslog) and /etc/pgsyslog (0750 root:pgsyslog), an example
#   /etc/pgsyslog/pgsyslog.toml (an existing one is kept), and the unit in
#   /etc/systemd/system. Run it again to upgrade: the venv is updated, the config kept
#   (tests/test_packaging.py::test_second_run_upgrades_and_keeps_the_config).
#
# usage: install.sh [--root DIR] [--source DIR|FILE | --version X]
#   --root DIR     install into DIR as if it were / (only writes files: no user is made,
#                  nothing is chowned, systemd is not told; the venv's scripts name
#                  /opt/pgsyslog/bin/python, so they run when DIR is the root)
#   --source PATH  a pgsyslog checkout, wheel or sdist (default: this script's checkout)
#   --version X    pgsyslog X from the package index instead
# Environment: PYTHON, the interpreter for the venv (default /usr/bin/python3).
set -Eeuo pipefail

PROG=install.sh
USER_NAME=pgsyslog
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=""

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

say() {
    printf '%s\n' "$*"
}

trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
trap '[ -z "$WORK" ] || rm -rf "$WORK"' EXIT

usage() {
    sed -n '/^# usage:/,/^# Environment:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

ROOT=""
SOURCE=""
VERSION=""
PACKAGE=""

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --root|--source|--version)
                if [ $# -lt 2 ] || [ -z "$2" ]; then
                    die "$1 needs a value (see --help)"
                fi
                case "$1" in
                    --root) ROOT=$2 ;;
                    --source) SOURCE=$2 ;;
                    --version) VERSION=$2 ;;
                esac
                shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown argument '$1' (see --help)" ;;
        esac
    done
    [ -z "$SOURCE" ] || [ -z "$VERSION" ] || die "give --source or --version, not both"
}

# Where everything goes; with --root, below that directory (made only once the source is
# known to be good: make_root).
set_paths() {
    if [ -n "$ROOT" ]; then
        ROOT=$(realpath -m -- "$ROOT")
        [ "$ROOT" != / ] || ROOT=""
    fi
    VENV=$ROOT/opt/pgsyslog
    CONFIG_DIR=$ROOT/etc/pgsyslog
    STATE_DIR=$ROOT/var/lib/pgsyslog
    UNIT_DIR=$ROOT/etc/systemd/system
    SYSUSERS_FILE=$ROOT/etc/sysusers.d/pgsyslog.conf
    TMPFILES_FILE=$ROOT/etc/tmpfiles.d/pgsyslog.conf
}

# Run a command with its output in a log; on failure one line names it and the log.
quietly() {
    local what=$1
    shift
    local log="$WORK/step.log"
    if ! "$@" >"$log" 2>&1; then
        local kept
        kept=$(mktemp "${TMPDIR:-/tmp}/pgsyslog-install.XXXXXX")
        cp "$log" "$kept"
        die "$what failed: $(cause_in "$log") (full output: $kept)"
    fi
}

# The line of a command's output that says why it failed: pip's last ERROR, else the last
# (but not tar's closing summary, which names no file).
cause_in() {
    local cause
    cause=$(grep -E '^\s*ERROR:' "$1" | tail -n 1 || true)
    [ -n "$cause" ] || cause=$(grep -v -e '^\s*$' -e '^tar: Exiting with failure status' \
        -e '^tar: Error is not recoverable' "$1" | tail -n 1 || true)
    printf '%s\n' "${cause#"${cause%%[![:space:]]*}"}"
}

systemd_runs() {
    [ -z "$ROOT" ] && [ -d /run/systemd/system ]
}

check_prerequisites() {
    if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (sudo $0), or give --root DIR to install into a directory"
    fi
    if [ -z "${PYTHON:-}" ]; then
        PYTHON=/usr/bin/python3
        [ -x "$PYTHON" ] || PYTHON=$(command -v python3) || die "python3 not found: apt install python3 python3-venv"
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "pgsyslog needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1 || echo missing)"
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
        || die "$PYTHON cannot make a virtual environment: apt install python3-venv"
}

# What pip installs: a copy of a checkout (so no build files land in it), a wheel or sdist
# (checked here, before anything is made), or a version from the index.
choose_package() {
    if [ -n "$VERSION" ]; then
        PACKAGE="pgsyslog==$VERSION"
        return
    fi
    local source=${SOURCE:-$(dirname "$HERE")}
    [ -e "$source" ] || die "--source $source does not exist"
    if [ -f "$source" ]; then
        check_archive "$source"
        PACKAGE=$(realpath -- "$source")
        return
    fi
    if [ ! -f "$source/pyproject.toml" ] || [ ! -d "$source/pgsyslog" ]; then
        die "$source is not a pgsyslog checkout: give --source DIR|FILE or --version X"
    fi
    mkdir "$WORK/src"
    quietly "copying the checkout $source" copy_checkout "$source" "$WORK/src"
    PACKAGE=$WORK/src
}

# Left behind: what git, the venv, builds, linters and test runners keep in a checkout.
# pip needs none of it, and tools rewrite their caches while they run (tar: "file changed
# as we read it"; tests/test_packaging.py::test_build_files_and_caches_are_not_copied).
CHECKOUT_EXCLUDES=(--exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist
    --exclude=.mypy_cache --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.hypothesis
    --exclude='*.egg-info' --exclude=__pycache__)

copy_checkout() {
    tar -C "$1" "${CHECKOUT_EXCLUDES[@]}" -cf - . | tar -C "$2" -xf -
}

# A wheel or sdist whose metadata names pgsyslog; else one line saying what it is instead.
check_archive() {
    local problem
    problem=$(archive_problem "$1")
    [ -z "$problem" ] || die "$1 is not a pgsyslog wheel or sdist: $problem"
}

archive_problem() {
    "$PYTHON" -I - "$1" 2>&1 <<'EOF' | tail -n 1
import email.parser, re, sys, tarfile, zipfile


def named(metadata: bytes) -> str:
    name = email.parser.BytesHeaderParser().parsebytes(metadata).get("Name", "")
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path: str) -> str:
    if not zipfile.is_zipfile(path):
        raise ValueError("not a zip archive, as a wheel is")
    with zipfile.ZipFile(path) as wheel:
        for member in wheel.namelist():
            if re.fullmatch(r"[^/]+\.dist-info/METADATA", member):
                return named(wheel.read(member))
    raise ValueError("no .dist-info/METADATA in it")


def sdist_name(path: str) -> str:
    if not tarfile.is_tarfile(path):
        raise ValueError("not a tar archive, as an sdist is")
    with tarfile.open(path) as sdist:
        for member in sdist:
            if re.fullmatch(r"[^/]+/PKG-INFO", member.name) and member.isfile():
                return named(sdist.extractfile(member).read())
    raise ValueError("no PKG-INFO in it")


def name_of(path: str) -> str:
    if path.endswith(".whl"):
        return wheel_name(path)
    if path.endswith(".tar.gz"):
        return sdist_name(path)
    raise ValueError("its name ends in neither .whl nor .tar.gz")


try:
    name = name_of(sys.argv[1])
    if name != "pgsyslog":
        print(f"it is the package {name!r}" if name else "its metadata names no package")
except ValueError as problem:
    print(problem)
except Exception as error:
    print(f"cannot read it: {error}")
EOF
}

# Only now is --root made: a source that will not install leaves nothing behind
# (tests/test_packaging.py::test_a_file_that_is_not_a_pgsyslog_package_makes_nothing).
make_root() {
    [ -z "$ROOT" ] || mkdir -p -- "$ROOT" 2>/dev/null || die "cannot create --root $ROOT"
}

installed_version() {
    local line
    line=$("$VENV/bin/python" -I -m pgsyslog --version 2>/dev/null) || return 0
    echo "${line##* }"
}

make_user() {
    install -D -m 0644 "$HERE/pgsyslog.sysusers" "$SYSUSERS_FILE"
    [ -z "$ROOT" ] || return 0
    if systemd_runs && command -v systemd-sysusers >/dev/null; then
        quietly "systemd-sysusers" systemd-sysusers "$SYSUSERS_FILE"
    elif getent passwd "$USER_NAME" >/dev/null; then
        :
    elif command -v useradd >/dev/null; then
        quietly "useradd" useradd --system --user-group --no-create-home \
            --home-dir /var/lib/pgsyslog --shell /usr/sbin/nologin \
            --comment "pgsyslog syslog receiver" "$USER_NAME"
    elif command -v adduser >/dev/null; then
        quietly "adduser" adduser --system --group --no-create-home \
            --home /var/lib/pgsyslog --shell /usr/sbin/nologin "$USER_NAME"
    else
        die "cannot create the user $USER_NAME: no systemd-sysusers, useradd or adduser"
    fi
}

# directory, mode, owner (owner only applied without --root: its ids are this machine's)
make_dir() {
    install -d -m "$2" -- "$1"
    chmod "$2" -- "$1"
    [ -n "$ROOT" ] || chown -- "$3" "$1"
}

make_directories() {
    install -D -m 0644 "$HERE/pgsyslog.tmpfiles" "$TMPFILES_FILE"
    make_dir "$ROOT/opt" 0755 root:root
    make_dir "$CONFIG_DIR" 0750 "root:$USER_NAME"
    make_dir "$STATE_DIR" 0750 "$USER_NAME:$USER_NAME"
}

make_venv() {
    local spec=$1
    if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
        say "$VENV/bin/python no longer runs (Python upgraded?): making the venv anew"
        quietly "python3 -m venv --clear" "$PYTHON" -m venv --clear "$VENV"
    elif [ ! -x "$VENV/bin/python" ]; then
        quietly "python3 -m venv" "$PYTHON" -m venv "$VENV"
    fi
    PIP_DISABLE_PIP_VERSION_CHECK=1 quietly "pip install $spec" \
        "$VENV/bin/python" -m pip install --upgrade "$spec"
    point_scripts_at_target
}

# With --root the venv is to run as /opt/pgsyslog, but venv and pip wrote $VENV into it:
# into each script's first line, as "#!$VENV/bin/python", or, where that path holds a space
# or is too long for a shebang (127 bytes), as "#!/bin/sh" and a line that execs
# "$VENV/bin/python"; and into bin/activate* and pyvenv.cfg. All of them are made to name
# /opt/pgsyslog (tests/test_packaging.py::test_scripts_name_the_target_not_the_build_root).
point_scripts_at_target() {
    [ -n "$ROOT" ] || return 0
    quietly "pointing $VENV at /opt/pgsyslog" rename_venv "$VENV" /opt/pgsyslog
}

rename_venv() {
    "$PYTHON" -I - "$1" "$2" <<'EOF'
import os, re, sys
from pathlib import Path

venv, built, target = Path(sys.argv[1]), os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
# distlib's form: #!/bin/sh, '''exec' "<python>" "$0" "$@", ' ''' (quotes when a space).
sh_form = re.compile(rb"#!/bin/sh\n'''exec' (\"?)" + re.escape(built)
                     + rb"(/bin/[^\"\s]+)\1(.*?) \"\$0\" \"\$@\"\n' '''\n")
for path in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg"]:
    if path.is_symlink() or not path.is_file():
        continue
    text = path.read_bytes()
    if b"\0" in text or built not in text:
        continue
    found = sh_form.match(text)
    if found:  # the target's path is short and has no space: a plain shebang fits
        text = b"#!" + target + found[2] + found[3] + b"\n" + text[found.end():]
    path.write_bytes(text.replace(built, target))
EOF
}

install_config() {
    local example=$HERE/pgsyslog.toml
    install -m 0640 "$example" "$CONFIG_DIR/pgsyslog.toml.example"
    if [ -e "$CONFIG_DIR/pgsyslog.toml" ]; then
        say "kept $CONFIG_DIR/pgsyslog.toml (the new example is pgsyslog.toml.example beside it)"
    else
        install -m 0640 "$example" "$CONFIG_DIR/pgsyslog.toml"
        say "wrote the example configuration $CONFIG_DIR/pgsyslog.toml: edit it before starting"
    fi
    [ -n "$ROOT" ] || chown "root:$USER_NAME" "$CONFIG_DIR/pgsyslog.toml" \
        "$CONFIG_DIR/pgsyslog.toml.example"
}

install_unit() {
    install -D -m 0644 "$HERE/pgsyslog.service" "$UNIT_DIR/pgsyslog.service"
    if systemd_runs; then
        quietly "systemd-tmpfiles" systemd-tmpfiles --create "$TMPFILES_FILE"
        quietly "systemctl daemon-reload" systemctl daemon-reload
        if systemctl --quiet is-active pgsyslog; then
            say "pgsyslog runs the old version until: systemctl restart pgsyslog"
        fi
    fi
}

main() {
    parse_args "$@"
    set_paths
    check_prerequisites
    umask 022
    WORK=$(mktemp -d)
    local before after
    choose_package
    make_root
    before=$(installed_version)
    make_user
    make_directories
    make_venv "$PACKAGE"
    install_config
    install_unit
    after=$(installed_version)
    [ -n "$after" ] || die "pgsyslog --version does not run in $VENV after the install"
    if [ -n "$before" ]; then
        say "upgraded pgsyslog $before -> $after in $VENV"
    else
        say "installed pgsyslog $after in $VENV"
        [ -n "$ROOT" ] || say "start it with: systemctl enable --now pgsyslog"
    fi
}

main "$@"
