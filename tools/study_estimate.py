"""How long `dvc repro` will train here, said before it starts: the trainings to run and an estimate.

    python -m tools.study_estimate        (scripts/reproduce.sh prints it before `dvc repro`)

A training takes its epochs times its seconds per epoch: this machine's own, from its last
training of that model in that precision on that many images (stages/progress.py keeps them beside
the checkpoints), or else the model's GFLOP per epoch at the rate the committed study trained at
on this project's machines (REFERENCE_GFLOP_PER_SECOND). Downloads, evaluations, compare and
report take seconds to a minute and are left out. Which trainings will run: those `dvc status`
says changed, or all of them when the data upstream changed (download or prepare, for any reason
but the seed list, which prepare only checks); a training DVC then restores from its run cache
takes seconds instead.
"""

import json
import subprocess
from pathlib import Path

from stages import architecture, cli, params, prepare, progress, train

# Effective rates of earlier runs on this project's machine, in GFLOP of training per second of a
# training stage (start-up, validation and saving included; evaluations, compare and report add
# about 7%).
# float32: the committed six-seed study's 29 trainings that ran from scratch (conv3_dropout's
# second seed resumed and is left out), 1,455,182 GFLOP in 6,816 s of stage time. mixed_bfloat16:
# eleven full-size trainings of the study models (issue 23's evidence run, docs/performance.md
# section 7), 491,696 GFLOP in 1,448 s. A first estimate only: the models' efficiencies differ (0.4
# to 0.8 of the hardware bound) and so do machines, so this machine's own history replaces it as
# soon as a model has trained here.
REFERENCE_GFLOP_PER_SECOND = {"float32": 213.0, "mixed_bfloat16": 340.0}
HISTORY = Path(".dvc/tmp/checkpoints/epoch-seconds.json")


def split_sizes(data: dict) -> tuple[int, int]:
    """Training and validation images, as `prepare` splits them (MNIST's 60,000, or `data.limit`)."""
    total = 60_000 if data["limit"] is None else data["limit"]
    train_images = prepare.split_index(total, data["validation_fraction"])
    return train_images, total - train_images


def estimate(trainings: list[dict], seconds_per_epoch, reference_rate: float) -> dict:
    """Seconds for `trainings` ({model, epochs, gflop_per_epoch, key} each), from this machine's seconds per
    epoch where `seconds_per_epoch(key)` knows them, else from GFLOP at `reference_rate` (GFLOP/s)."""
    total, from_history = 0.0, 0
    for training in trainings:
        known = seconds_per_epoch(training["key"])
        if known is not None:
            from_history += 1
            total += known * training["epochs"]
        else:
            total += training["gflop_per_epoch"] * training["epochs"] / reference_rate
    return {"seconds": total, "from_history": from_history, "from_reference": len(trainings) - from_history}


def line(trainings: list[dict], result: dict, reference_rate: float) -> str:
    if not trainings:
        return "study: no training to run; `dvc repro` brings the rest up to date in a minute or two"
    sources = []
    if result["from_history"]:
        sources.append(f"{result['from_history']} from this machine's past trainings")
    if result["from_reference"]:
        sources.append(f"{result['from_reference']} from the committed run's {reference_rate:.0f} GFLOP/s")
    return (
        f"study: {len(trainings)} trainings to run, about {progress.duration(result['seconds'])} of training here "
        f"({', '.join(sources)}); each training prints its own time left as it goes"
    )


def trainings_to_run(project_params: dict, changed_stages: set[str] | None) -> list[dict]:
    """Every train@<model>-<seed> stage of the params, or those `dvc status` reported (None: all)."""
    settings = train.TrainParams.from_section(project_params["train"])
    train_images, validation_images = split_sizes(project_params["data"])
    found = []
    for model in project_params["models"]:
        spec = architecture.parse_architecture(model, project_params[model])
        gflop = train.epoch_gflop(spec, train_images, validation_images)
        for seed in params.seed_list(project_params["train"]["seeds"]):
            stage = f"train@{model}-{seed}"
            if changed_stages is None or stage in changed_stages:
                found.append({"stage": stage, "model": model, "epochs": settings.epochs, "gflop_per_epoch": gflop,
                              "key": f"{model}/{settings.precision}/{train_images} images"})  # fmt: skip
    return found


UPSTREAM = ("download", "prepare")


def changed_stages(status: dict) -> set[str] | None:
    """From `dvc status --json`: the stages that will run, or None for all of them (the data changed).

    `dvc status` names a stage whose own inputs changed, not those downstream of it; every training
    reads prepare's output, so a change upstream retrains everything, except a new seed list, which
    prepare checks and writes the same bytes for.
    """
    for stage in UPSTREAM:
        for entry in status.get(stage, []):
            # DVC 3 lists a changed parameter under "changed deps", as {params file: {key: change}}; a changed
            # file is {path: change}, a string.
            only_seeds = isinstance(entry, dict) and all(
                isinstance(changes, dict) and set(changes) <= {"train.seeds"}
                for changed in entry.values()
                for changes in changed.values()
            )
            if not only_seeds:
                return None
    return set(status)


def changed() -> set[str] | None:
    """The stages `dvc status` reports as changed (None: all, or it cannot tell)."""
    completed = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True, check=False)
    try:
        return changed_stages(json.loads(completed.stdout)) if completed.returncode == 0 else None
    except ValueError:
        return None


def main() -> None:
    project_params = params.load_params()
    precision = train.TrainParams.from_section(project_params["train"]).precision
    trainings = trainings_to_run(project_params, changed())
    rate = REFERENCE_GFLOP_PER_SECOND[precision]
    print(line(trainings, estimate(trainings, progress.History(HISTORY).seconds_per_epoch, rate), rate))


if __name__ == "__main__":
    cli.run("study_estimate", main)
