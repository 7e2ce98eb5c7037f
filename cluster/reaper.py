"""Runs one command on a worker and takes its whole process tree down when the task dies.

    python -m cluster.reaper COMMAND [ARGUMENTS ...]

Ray cancels a task, or loses it with its node, by killing the worker process: nothing in that
process runs on SIGKILL, and its `dvc repro` child, with the training under it, would go on as
orphans. So the worker starts this instead: the kernel sends it SIGTERM the moment its parent
dies (Linux' PR_SET_PDEATHSIG), and it passes SIGTERM to the command's own process group (DVC
runs the stage command in its group), waits for the training to stop at a batch boundary (it
keeps its checkpoint), then kills what is left. Its exit status is the command's.
"""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
GRACE_SECONDS = 20


def die_with_parent(signal_number: int = signal.SIGTERM) -> None:
    """Asks the kernel to send `signal_number` when the process that started this one dies (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def main(command: list[str]) -> int:
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return 1
    child = subprocess.Popen(command, start_new_session=True)

    def stop(signal_number, frame) -> None:
        try:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        finally:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sys.exit(128 + signal_number)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
