"""Checks that the committed numbers come out again: retrains one (model, seed) on the full data and compares.

The cheapest pair, conv3_pool with the first seed, is retrained from scratch (download, prepare,
train, evaluate) in a temporary clone of this repository, and its test accuracy must lie inside the
committed seeds' 95% prediction interval for one more run (metrics/comparison.json), widened by the
spread between machines: other CPUs run other oneDNN kernels and move the last digits. On the machine that made the
committed run the result is byte-identical and the check also says so.

    python scripts/check_reproduce.py            # exit 0: inside; exit 1: names model, value and interval
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODEL = "conv3_pool"
# The largest change in a model's test accuracy seen when the same commit, seed and data ran on another
# 2-core machine with another CPU (issue "seeds", rerun of the whole study: arch 0.9890 -> 0.9913).
CROSS_MACHINE_SPREAD = 0.0023


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    committed = json.loads((root / "metrics/comparison.json").read_text())
    seed = committed["seeds"][0]
    interval = committed.get("models", {}).get(MODEL, {}).get("test_accuracy_prediction_interval")
    if not (isinstance(interval, list) and len(interval) == 2):
        print(
            f"check_reproduce: metrics/comparison.json: {MODEL}'s test_accuracy_prediction_interval is {interval!r}; "
            "expected [low, high] from two seeds or more with some spread (rerun `dvc repro`)",
            file=sys.stderr,
        )
        return 1
    predicted_low, predicted_high = interval
    low, high = predicted_low - CROSS_MACHINE_SPREAD, predicted_high + CROSS_MACHINE_SPREAD
    stage = f"evaluate@{MODEL}-{seed}"
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
        # DVC and the stages' `python` from this interpreter's environment (CI does not activate it); a fresh
        # cache, so everything is computed here.
        environment = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        completed = subprocess.run([sys.executable, "-m", "dvc", "repro", stage], cwd=clone, text=True,
                                   capture_output=True, check=False, env=environment)  # fmt: skip
        if completed.returncode != 0:
            print(completed.stdout[-4000:], completed.stderr[-4000:], sep="\n", file=sys.stderr)
            print(f"check_reproduce: `dvc repro {stage}` failed", file=sys.stderr)
            return 1
        result = json.loads((clone / f"metrics/evaluate/{MODEL}/seed-{seed}.json").read_text())["test"]["accuracy"]
        same_bytes = (clone / "dvc.lock").read_text() == (root / "dvc.lock").read_text()
    where = (f"the committed seeds' 95% prediction interval {predicted_low:.4f} to {predicted_high:.4f}, widened by "
             f"{CROSS_MACHINE_SPREAD} for other CPUs: {low:.4f} to {high:.4f}")  # fmt: skip
    if not low <= result <= high:
        print(f"check_reproduce: {MODEL} seed {seed} retrained on the full data: test accuracy {result:.4f}, outside "
              f"the expected interval ({where})", file=sys.stderr)  # fmt: skip
        return 1
    identical = "; dvc.lock identical to the committed one" if same_bytes else ""
    print(f"check_reproduce: {MODEL} seed {seed} retrained on the full data: test accuracy {result:.4f}, inside "
          f"{where}{identical}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
