"""Training that survives being killed: per-epoch checkpoints, resumed with the same result (docs/reliability.md)."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, allow_ctrl_c, run, run_python, set_params

CHECKPOINTS = Path(".dvc/tmp/checkpoints")


class Background:
    """A command in its own process group, its output drained by a thread; the group is killed on exit."""

    def __init__(self, command: list[str], cwd: Path, environment: dict):
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=allow_ctrl_c,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *exception) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.reader.join(timeout=10)

    def wait_for(self, path: Path, timeout: float = 180) -> None:
        """Waits until `path` exists (a checkpoint written), failing with the output so far if it never does."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{path} never appeared:\n" + "".join(self.lines[-40:]))
            time.sleep(0.02)

    def trainer_pids(self) -> list[int]:
        listing = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(self.process.pid)], capture_output=True,
                                 text=True, check=False)  # fmt: skip
        # The trainers themselves, not a shell whose command line names them.
        processes = [line.split(maxsplit=2) for line in listing.stdout.splitlines()]
        return [int(pid) for pid, program, *arguments in processes
                if Path(program).name.startswith("python") and "stages.train" in " ".join(arguments)]  # fmt: skip

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code, "".join(self.lines)


def locked_outputs(project: Path, stage: str) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {output["path"]: output["md5"] for output in lock["stages"][stage]["outs"]}


def latest_checkpoint(directory: Path) -> int:
    epochs = [int(path.name.removeprefix("epoch-")) for path in directory.glob("epoch-*")]
    return max(epochs, default=0)


# A model whose training draws random numbers besides dropout (the augment layer's rotations, shifts and
# zooms), trained in mixed bfloat16: its resume must restore those generators' states too.
AUGMENTED_BFLOAT16 = {
    "train.precision": "mixed_bfloat16",
    "arch.layers": [{"type": "augment", "rotation": 10, "shift": 0.1, "zoom": 0.1}, {"type": "conv", "filters": 8},
                    {"type": "pool"}, {"type": "dropout", "rate": 0.3}, {"type": "global_pool"}],
}  # fmt: skip


@pytest.mark.pipeline
@pytest.mark.parametrize(
    ("how", "model", "overrides"),
    [("kill -9", "conv3_dropout", {}), ("ctrl-c", "arch", {}), ("kill", "arch", {}),
     ("kill", "arch", AUGMENTED_BFLOAT16)],
    ids=["kill -9", "ctrl-c", "kill", "kill augment bfloat16"],
)  # fmt: skip
def test_a_killed_training_resumes_after_its_last_checkpoint_with_the_same_result(
    reproduced_project, isolated_environment, how, model, overrides
):
    project, environment = reproduced_project, isolated_environment
    # About a second per epoch, so the signal lands between two checkpoints.
    set_params(project / "params.yaml", {"train.epochs": 4, "data.limit": 1500} | overrides)
    run(["dvc", "repro", "prepare"], project, environment)
    stage = f"train@{model}-1"
    checkpoints = project / CHECKPOINTS / stage
    with Background(["dvc", "repro", stage], project, environment) as training:
        training.wait_for(checkpoints / "epoch-0002")
        if how == "ctrl-c":
            os.killpg(training.process.pid, signal.SIGINT)  # what a terminal sends to the whole group
        else:
            for pid in training.trainer_pids():
                os.kill(pid, signal.SIGKILL if how == "kill -9" else signal.SIGTERM)
        code, output = training.finish()
    assert code != 0, output
    done = latest_checkpoint(checkpoints)
    assert done >= 2, output
    assert not (project / f"models/{model}/seed-1/model.keras").exists()
    live = project / f"metrics/train/{model}/seed-1"
    if how == "kill -9":
        # Nothing runs on SIGKILL: DVCLive's log of the finished epochs stays, and DVC sees the stage changed.
        assert (live / "plots/metrics/eval/loss.tsv").exists()
        assert stage in run(["dvc", "status", stage], project, environment).stdout
    else:
        assert f"{stage}: stopped; partial outputs removed, the checkpoint in " in output, output
        assert "train: interrupted; `dvc repro` will run this stage again" in output
        assert "exited with 130" in output
        assert not live.exists() and not (project / f"models/{model}/seed-1").exists()

    resumed = run(["dvc", "repro", stage], project, environment).stdout
    assert f"{stage}: resuming after epoch {done} of 4" in resumed
    assert f"Epoch {done + 1}/4" in resumed and "Epoch 1/4" not in resumed
    assert not checkpoints.exists()  # removed once the stage finished
    after_resume = locked_outputs(project, stage)

    uninterrupted = run(["dvc", "repro", "-f", stage], project, environment).stdout
    assert "Epoch 1/4" in uninterrupted and "resuming" not in uninterrupted
    assert locked_outputs(project, stage) == after_resume  # model, metrics and per-epoch plot data


def stage_command(model: str, seed: int) -> list[str]:
    """The training stage's command, as dvc.yaml writes it."""
    return [
        sys.executable, "-m", "stages.train", "--name", model, "--seed", str(seed), "--data-dir", "data/prepared",
        "--model-dir", f"models/{model}/seed-{seed}", "--live-dir", f"metrics/train/{model}/seed-{seed}",
        "--checkpoint-dir", str(CHECKPOINTS / f"train@{model}-{seed}"),
    ]  # fmt: skip


def leave_a_checkpoint(project: Path, environment: dict, model: str, seed: int) -> Path:
    """Starts a long training and kills it (SIGKILL) once a checkpoint is written; returns the checkpoint."""
    directory = project / CHECKPOINTS / f"train@{model}-{seed}"
    with Background(stage_command(model, seed), project, environment) as training:
        training.wait_for(directory / "epoch-0001")
        training.process.kill()
        training.finish()
    return directory / f"epoch-{latest_checkpoint(directory):04d}"


@pytest.mark.pipeline
def test_a_checkpoint_from_other_inputs_is_discarded_and_training_starts_at_epoch_1(
    reproduced_project, isolated_environment
):
    project, environment = reproduced_project, isolated_environment
    set_params(project / "params.yaml", {"train.epochs": 30})
    leave_a_checkpoint(project, environment, "arch", 1)
    set_params(project / "params.yaml", {"train.epochs": 2, "arch.layers[0].filters": 16})  # another spec
    rerun = run(stage_command("arch", 1), project, environment).stdout
    assert (
        f"train@arch-1: discarding the checkpoint in {CHECKPOINTS / 'train@arch-1'}: it was made from other inputs "
        "(command, code, params or data); training starts at epoch 1"
    ) in rerun
    assert "Epoch 1/2" in rerun and "resuming" not in rerun


@pytest.mark.pipeline
def test_a_checkpoint_resumes_in_a_moved_project_and_survives_edits_to_code_the_stage_does_not_run(
    reproduced_project, isolated_environment, tmp_path
):
    project, environment = reproduced_project, isolated_environment
    set_params(project / "params.yaml", {"train.epochs": 30})
    done = int(leave_a_checkpoint(project, environment, "arch", 1).name.removeprefix("epoch-"))
    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    project.rename(moved)  # a clone at another path, or a cluster node that mounts the project elsewhere
    # stages/report.py is not among the training stage's code deps (dvc.yaml), so it does not count.
    with open(moved / "stages/report.py", "a") as report:
        report.write("\n# an edit the training stage does not run\n")
    resumed = Background(stage_command("arch", 1), moved, environment)
    with resumed:
        resumed.wait_for(moved / CHECKPOINTS / "train@arch-1" / f"epoch-{done + 1:04d}")
    output = "".join(resumed.lines)
    assert f"train@arch-1: resuming after epoch {done} of 30" in output, output
    assert "discarding" not in output

    # An edit to code the stage runs discards it: a module it imports, and its own file (run as __main__).
    for module in ("stages/architecture.py", "stages/train.py"):
        with open(moved / module, "a") as code:
            code.write("\n# an edit the training stage runs\n")
        rerun = Background(stage_command("arch", 1), moved, environment)
        with rerun:
            deadline = time.monotonic() + 120
            # Until its first epoch is checkpointed ("Epoch 2/30" starts after it), so the next edit has one to discard.
            while "Epoch 2/30" not in "".join(rerun.lines) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert "train@arch-1: discarding the checkpoint" in "".join(rerun.lines), module


def test_the_fingerprint_hashes_exactly_the_training_stages_declared_code(isolated_environment):
    script = (
        "import json; from stages import checkpoint, train; "
        "print(json.dumps([str(path.relative_to(train.PROJECT_ROOT)) "
        "for path in checkpoint.loaded_modules(train.PROJECT_ROOT, 'stages')]))"
    )
    completed = run_python(["-c", script], isolated_environment)
    assert completed.returncode == 0, completed.stderr
    declared = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    assert json.loads(completed.stdout) == sorted(path for path in declared if path.endswith(".py"))


@pytest.mark.pipeline
def test_a_truncated_checkpoint_is_reported_and_training_runs_clean(reproduced_project, isolated_environment):
    project, environment = reproduced_project, isolated_environment
    set_params(project / "params.yaml", {"train.epochs": 30})
    checkpoint = leave_a_checkpoint(project, environment, "arch", 1)
    variables = checkpoint / "variables.npz"
    variables.write_bytes(variables.read_bytes()[: variables.stat().st_size // 2])  # a kill mid-write, say
    rerun = run(stage_command("arch", 1), project, environment)
    assert re.search(rf"train@arch-1: ignoring the unreadable checkpoint .*{checkpoint.name} \(.*variables.npz: not a "
                     r"readable .npz archive", rerun.stdout), rerun.stdout  # fmt: skip
    assert "Epoch 1/30" in rerun.stdout and "train@arch-1: 30 epochs done" in rerun.stdout
    assert "Traceback" not in rerun.stderr


@pytest.mark.pipeline
def test_a_second_repro_at_once_is_refused_by_dvc_locks(reproduced_project, isolated_environment):
    project, environment = reproduced_project, isolated_environment
    set_params(project / "params.yaml", {"train.epochs": 400})
    with Background(["dvc", "repro", "train@arch-1"], project, environment) as first:
        # Training has begun (its first checkpoint is written), so DVC holds its locks: no race with the clock.
        first.wait_for(project / CHECKPOINTS / "train@arch-1" / "epoch-0001")
        second = run(["dvc", "repro"], project, environment, check=False)
        assert first.process.poll() is None, "the first run ended before the second was refused"
    # Leaving the block killed the first run's whole process group.
    assert second.returncode != 0
    # DVC's read/write lock on the paths in use refuses the second run, naming the blocking process.
    assert "is busy, it is being blocked by" in second.stderr, second.stderr
