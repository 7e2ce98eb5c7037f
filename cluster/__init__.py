"""The pipeline's stages on a Ray cluster: DVC keeps all the bookkeeping, Ray only schedules.

    python -m cluster repro [TARGETS ...] [-S key=value ...] [--address HOST:PORT]

One job per module:
    plan.py             what `dvc repro` would run, in DAG order (asked of DVC)
    grid.py             -S points, params.yaml edits, the clean-workspace rule and its restore
    snapshot.py         the code and params a task runs, frozen as bytes with their digest
    worker.py           the task: one stage in a scratch copy of its snapshot
    checkpoint_store.py training checkpoints on the DVC remote, so a retried task resumes
    lineage.py          the invariant: a result's recorded inputs are the ones that made it
    placement.py        records a worker's result here, only after the invariant holds
    coordinator.py      connects to Ray, schedules tasks and local stages
    experiments.py      each grid point reproduced and saved as a DVC experiment
    __main__.py         the command line
"""
