"""Loopback ports for the servers and Ray nodes of tests and benchmarks."""

import os
import socket
import subprocess
import time

# Ports for the tests' servers and Ray nodes: below the kernel's ephemeral range (32768 and up by default), where
# no other process's connect() or bind(0) lands, above Ray's default worker ports (10002-19999), and a block of
# its own for each pytest-xdist worker. A probe socket closed before the server binds the port is then safe.
PORTS_BASE, PORTS_PER_WORKER, EPHEMERAL_START = 20_000, 1_500, 32_768
_ports_handed_out: set[int] = set()


def free_ports(count: int = 1) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on now, distinct, never handed out twice by this process, and out
    of reach of other processes' automatic port choices (see PORTS_BASE)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = PORTS_BASE + PORTS_PER_WORKER * (int(worker) if worker.isdigit() else 0)
    if first + PORTS_PER_WORKER > EPHEMERAL_START:
        raise AssertionError(f"xdist worker {worker}: its ports would reach the ephemeral range; use fewer workers")
    found = []
    for port in range(first, first + PORTS_PER_WORKER):
        if len(found) == count:
            break
        if port in _ports_handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_handed_out.add(port)
        found.append(port)
    if len(found) < count:
        raise AssertionError(f"no {count} free ports left in {first}-{first + PORTS_PER_WORKER - 1}")
    return found


def wait_for_port(port: int, process: subprocess.Popen, timeout: float, describe=lambda: "") -> None:
    """Waits until something listens on 127.0.0.1:`port`; fails, with `describe()`, if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"nothing listened on port {port}: {describe()}") from None
            time.sleep(0.2)
