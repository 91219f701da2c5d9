"""Process limits checked at start: enough file descriptors for max_connections.

Every TCP or TLS connection (and TLS handshake in progress) is a descriptor. Many
systems start services with a soft RLIMIT_NOFILE of 1024, below the default
max_connections, so pgsyslog raises its soft limit to the hard one and says so, in one
line, when max_connections still does not fit.
"""

from __future__ import annotations

import resource

# Descriptors besides connections: listening sockets, the writers', the HTTP API's and
# maintenance's database connections, the spool's files, HTTP clients (32 live tails),
# an embedded PostgreSQL's pipes, logs; with room to spare.
FD_MARGIN = 256


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as far as allowed); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _kernel_max_open()
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit we have; the warning below tells the operator
    return soft


def open_files_warning(max_connections: int, open_files: int,
                       margin: int = FD_MARGIN) -> str | None:
    """The line to log when max_connections (plus margin) does not fit in open_files."""
    needed = max_connections + margin
    if open_files == resource.RLIM_INFINITY or open_files >= needed:
        return None
    return (f"max_connections is {max_connections} but this process may open only "
            f"{open_files} files ({margin} of them are needed besides connections): "
            f"connections past {max(open_files - margin, 0)} will fail; raise the limit "
            f"to {needed} (LimitNOFILE= in the systemd unit, or ulimit -n) or lower "
            "max_connections")


def check_open_files(max_connections: int) -> str | None:
    """At start: raise the limit, and return a warning line when it is still too low."""
    return open_files_warning(max_connections, raise_open_files_limit())


def _kernel_max_open() -> int:
    """fs.nr_open: the most a process may be given when the hard limit is unlimited."""
    try:
        with open("/proc/sys/fs/nr_open") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 1 << 20
