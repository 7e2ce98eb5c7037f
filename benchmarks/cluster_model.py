"""A model of the three-seed study on N machines: measured stage times, the DAG, greedy scheduling.

    python -m benchmarks.cluster_model [--overhead 8] [--output benchmarks/results-cluster-model.json]

Each training or evaluation is one task on one machine (a 2-core machine like this one, each task
using both cores); download, prepare, compare and report run on the coordinator. A task starts as
soon as its inputs are done and a machine is free, longest first (what Ray does with one task per
machine). `--overhead` adds seconds per remote task (Ray, pulling inputs and pushing the model
through the DVC remote): benchmarks/results-cluster.json measures it.

Stage times are this machine's, from the committed full run (README, "Results": the middle of
each model's measured range of training seconds per seed) and benchmarks/results-stage-costs.json
(evaluation, download, prepare, compare).
"""

import argparse
import heapq
import json
from pathlib import Path

TRAIN_SECONDS = {"conv3_pool": 105, "conv5_pool": 249, "conv7_pool": 265, "conv3_dropout": 707, "arch": 137}
EVALUATE_SECONDS = {"conv3_pool": 4.1, "conv5_pool": 5.5, "conv7_pool": 5.3, "conv3_dropout": 8.2, "arch": 4.6}
COORDINATOR_SECONDS = {"download": 1.7, "prepare": 1.6, "compare": 0.6, "report": 2.0}
SEEDS = (1, 2, 3)


def makespan(machines: int, overhead: float) -> float:
    """The study's wall time on `machines` machines: download and prepare, every training and evaluation, compare."""
    start = COORDINATOR_SECONDS["download"] + COORDINATOR_SECONDS["prepare"]
    free = [start] * machines  # when each machine is next free
    heapq.heapify(free)
    trainings = sorted(
        ((TRAIN_SECONDS[model] + overhead, model, seed) for model in TRAIN_SECONDS for seed in SEEDS), reverse=True
    )
    finished = []
    evaluations = []  # (ready time, seconds)
    for seconds, model, _seed in trainings:
        began = heapq.heappop(free)
        heapq.heappush(free, began + seconds)
        evaluations.append((began + seconds, EVALUATE_SECONDS[model] + overhead))
    for ready, seconds in sorted(evaluations):
        began = max(ready, heapq.heappop(free))
        heapq.heappush(free, began + seconds)
        finished.append(began + seconds)
    return max(finished) + COORDINATOR_SECONDS["compare"] + COORDINATOR_SECONDS["report"]


def critical_path(overhead: float) -> float:
    """The longest chain: download, prepare, the longest training, its evaluation, compare, report."""
    longest = max(TRAIN_SECONDS, key=TRAIN_SECONDS.get)
    return sum(COORDINATOR_SECONDS.values()) + TRAIN_SECONDS[longest] + EVALUATE_SECONDS[longest] + 2 * overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead", type=float, default=0.0, help="seconds added per remote task")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results-cluster-model.json"))
    arguments = parser.parse_args()
    rows = {machines: round(makespan(machines, arguments.overhead)) for machines in (1, 2, 4, 8, 15)}
    result = {
        "overhead_seconds_per_task": arguments.overhead,
        "study_seconds_by_machines": rows,
        "critical_path_seconds": round(critical_path(arguments.overhead)),
    }
    arguments.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
