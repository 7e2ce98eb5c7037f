"""A real two-node Ray cluster on loopback for tests: its own temp directory and ports, stopped by the PIDs it started.

`ray stop` would stop every Ray process on the machine (a developer's own cluster included), so
each node runs `ray start --block` in its own process group, which the cluster kills on exit.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.ports import free_ports, wait_for_port

NODE_PORT_OPTIONS = (
    "--node-manager-port", "--object-manager-port", "--metrics-export-port", "--runtime-env-agent-port",
    "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port",
)  # fmt: skip
WORKER_PORTS = 12  # one per worker process a node may start (tasks, retries, the driver's connection)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    listing = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in listing.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, frontier = [], [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


class RayCluster:
    """A head and one worker node, one CPU each, on 127.0.0.1."""

    def __init__(self, environment: dict, cpus_per_node: int = 1):
        # Short, under /tmp: Ray's Unix socket paths inside it must stay under 108 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp")) / "ray"
        self.environment, self.cpus = environment, cpus_per_node
        self.nodes: list[subprocess.Popen] = []
        self.logs: list = []
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"

    def _start_node(self, head: bool) -> subprocess.Popen:
        ports = free_ports(len(NODE_PORT_OPTIONS) + WORKER_PORTS)
        worker_ports = ",".join(map(str, ports[len(NODE_PORT_OPTIONS) :]))
        command = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--disable-usage-stats",
                   "--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
                   "--worker-port-list", worker_ports]  # fmt: skip
        for option, port in zip(NODE_PORT_OPTIONS, ports, strict=False):
            command += [option, str(port)]
        if head:
            (client_port,) = free_ports(1)
            command += ["--head", "--port", str(self.port), "--temp-dir", str(self.temp_dir),
                        "--include-dashboard=false", "--ray-client-server-port", str(client_port)]  # fmt: skip
        else:
            command += ["--address", self.address]
        log = open(self.temp_dir.parent / f"ray-{'head' if head else 'worker'}.log", "w")  # noqa: SIM115
        self.logs.append(log)  # closed in __exit__
        node = subprocess.Popen(command, env=self.environment, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.nodes.append(node)
        return node

    def node_ids(self) -> list[str]:
        """The alive nodes' ids, asked of the cluster in a child process (this one stays free of Ray)."""
        script = (
            f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False); "
            "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))"
        )
        shown = subprocess.run([sys.executable, "-c", script], env=self.environment, capture_output=True, text=True,
                               timeout=60, check=True)  # fmt: skip
        import json

        return json.loads(shown.stdout.strip().splitlines()[-1])

    def __enter__(self):
        # A failure while starting (a port taken, a node that never joins) stops what did start: `with` calls
        # __exit__ only once __enter__ has returned.
        try:
            self.temp_dir.mkdir(parents=True, exist_ok=True)
            self._start_node(head=True)
            wait_for_port(self.port, self.nodes[0], timeout=60, describe=lambda: "the head: " + self.log("head"))
            self._start_node(head=False)
            deadline = time.monotonic() + 90
            while len(self.node_ids()) < 2:
                if time.monotonic() > deadline or self.nodes[1].poll() is not None:
                    raise AssertionError("the worker node never joined: " + self.log("worker"))
                time.sleep(1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def log(self, name: str) -> str:
        path = self.temp_dir.parent / f"ray-{name}.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def raylet_pid(self, node: int) -> int:
        """The raylet of node 0 (head) or 1 (worker), found among the processes its `ray start` started."""
        for pid in descendants(self.nodes[node].pid):
            try:
                if "raylet" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode():
                    return pid
            except OSError:
                continue
        raise AssertionError(f"no raylet under node {node}")

    def __exit__(self, *exception) -> None:
        for node in reversed(self.nodes):
            pids = [node.pid, *descendants(node.pid)]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(node.pid, signal.SIGKILL)  # anything left in its process group
            except ProcessLookupError:
                pass
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass  # killed with SIGKILL: it goes; the rest of the cleanup must run regardless
        for log in self.logs:
            log.close()
        shutil.rmtree(self.temp_dir.parent, ignore_errors=True)
