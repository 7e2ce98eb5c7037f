"""The digit page's server, started and driven as a user would: for its tests and benchmarks."""

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_page(cwd: Path, environment: dict, models_dir: Path, port: int, *options: str, timeout: float = 120,
                 code_root: Path = ROOT):  # fmt: skip
    """`tools.digit_page serve` (from `code_root`) on 127.0.0.1:`port`, yielding its URL once it answers;
    stopped (by PID) on exit."""
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "tools.digit_page", "serve", "--port", str(port), "--models-dir", str(models_dir),
         *options],
        cwd=cwd, env=environment | {"PYTHONPATH": str(code_root)}, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "models", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the page's server did not answer on {url}: {log.read()[-3000:]}") from None
                time.sleep(0.3)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def post(url: str, body: bytes, content_type: str, timeout: float = 120) -> tuple[int | str, dict | None]:
    """POST `body`; (status, JSON answer), or (the connection error, None)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except OSError as error:
        return repr(error), None


def fire(url: str, bodies: list[tuple[bytes, str]], requests: int, concurrency: int) -> dict:
    """`requests` POSTs to `url` + predict, `concurrency` at a time, cycling through `bodies`."""

    def one(index: int) -> tuple[int | str, float]:
        body, content_type = bodies[index % len(bodies)]
        started = time.perf_counter()
        status, _ = post(url + "predict", body, content_type)
        return status, time.perf_counter() - started

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    seconds = time.perf_counter() - began
    latencies = np.array([latency for _, latency in results]) * 1000
    return {
        "requests": requests,
        "concurrency": concurrency,
        "failures": [status for status, _ in results if status != 200],
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "max_ms": round(float(latencies.max()), 1),
        "seconds": round(seconds, 2),
        "requests_per_second": round(requests / seconds, 1),
    }


def sample_bodies() -> list[tuple[bytes, str]]:
    """What users send: canvas drawings (280x280 PNG, as the page exports them) and phone-like JPEG photos."""
    from harness import digit_pictures
    from tools.digit_image import encoded

    bodies = [
        (encoded(digit_pictures.rendered_digit(digit, 280, ink=0, paper=255)), "image/png") for digit in "0123456789"
    ]
    photo = digit_pictures.photo(digit_pictures.rendered_digit("2", 260, ink=50, paper=235))
    bodies.append((encoded(photo, "JPEG"), "image/jpeg"))
    return bodies


def reset_peak_resident(pid: int) -> None:
    """Sets the process's peak resident memory (VmHWM) back to its resident memory now (Linux 4.0 and later)."""
    with open(f"/proc/{pid}/clear_refs", "w") as control:
        control.write("5")


def peak_resident_bytes(pid: int) -> int:
    """A process's peak resident memory so far (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) * 1024
