"""For a helper process pgsyslog starts (a UDP reader, an import's encoding worker): end
when the process that started it ends, even by SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` ends (Linux); exit at once when
    it has ended already.

    Not Linux, no libc, or ctypes refused (its import makes a callback, which needs memory
    both writable and executable: MemoryDenyWriteExecute in the systemd unit): then the
    caller's own channel to the parent must tell it (a hang-up, a closed queue).
    """
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it ended before prctl took effect
        raise SystemExit(0)
