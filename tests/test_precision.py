"""train.precision: mixed bfloat16 retrains every model, saves float32 models, and stays deterministic."""

import json

import pytest
import yaml

from stages import precision
from tests.conftest import project_params, run, run_python

CPUINFO = """processor\t: 0
flags\t\t: fpu vme avx2 avx512f {extra}
processor\t: 1
flags\t\t: fpu vme avx2 avx512f {extra}
"""


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra="avx512_bf16"))
    assert precision.cpu_flags(cpuinfo) == {"fpu", "vme", "avx2", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("policy", "flags", "gpu", "warned"),
    [
        ("mixed_bfloat16", {"avx2", "avx512f"}, False, True),  # no bfloat16 units: said
        ("mixed_bfloat16", {"avx2", "avx512_bf16"}, False, False),
        ("mixed_bfloat16", {"avx2", "amx_bf16", "amx_tile"}, False, False),
        ("mixed_bfloat16", {"avx2"}, True, False),  # a GPU computes
        ("mixed_bfloat16", None, False, False),  # flags unknown (not Linux): nothing to say
        ("float32", {"avx2"}, False, False),
    ],
)
def test_bfloat16_without_bfloat16_units_is_said_in_one_line(policy, flags, gpu, warned):
    warning = precision.slow_precision_warning(policy, flags, gpu)
    if warned:
        assert warning == (
            "train.precision is mixed_bfloat16, but this CPU has no bfloat16 units (none of the flags amx_bf16, "
            "avx512_bf16): training may be slower than in float32 (docs/performance.md)"
        )
    else:
        assert warning is None


def locked_outputs(project, stage: str) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {output["path"]: output["md5"] for output in lock["stages"][stage]["outs"]}


SAVED_MODEL = """
import json, sys
from stages import artifacts, cli
cli.import_tensorflow_quietly()
model = artifacts.load_keras_model(sys.argv[1])
print(json.dumps({
    "weights": sorted({str(weight.dtype) for weight in model.weights}),
    "compute": sorted({layer.dtype_policy.compute_dtype for layer in model.layers}),
}))
"""


@pytest.mark.pipeline
def test_mixed_bfloat16_retrains_every_model_and_saves_float32_models_deterministically(
    reproduced_project, isolated_environment
):
    project, environment = reproduced_project, isolated_environment
    float32_log = (project / "metrics/train/arch/seed-1/metrics.json").read_text()
    experiment = run(["dvc", "exp", "run", "-S", "train.precision=mixed_bfloat16"], project, environment).stdout
    for model in project_params()["models"]:
        assert f"Running stage 'train@{model}-1'" in experiment, experiment
        assert f"train@{model}-1: " in experiment and "1 epochs in mixed_bfloat16" in experiment
    assert "Running stage 'prepare'" not in experiment  # the parameter is the train stages' alone
    bfloat16_outputs = locked_outputs(project, "train@arch-1")
    # The policy changed the arithmetic: the logged losses differ (spec.json, which names the precision, is
    # not among the files compared).
    assert (project / "metrics/train/arch/seed-1/metrics.json").read_text() != float32_log

    # Weights float32 (as in every mixed policy) and float32 compute in the saved model.
    saved = run_python(["-c", SAVED_MODEL, str(project / "models/arch/seed-1/model.keras")], environment)
    assert saved.returncode == 0, saved.stderr[-3000:]
    assert json.loads(saved.stdout.strip().splitlines()[-1]) == {"weights": ["float32"], "compute": ["float32"]}
    spec = json.loads((project / "models/arch/seed-1/spec.json").read_text())
    assert spec["train"]["precision"] == "mixed_bfloat16"

    # tools.predict reads the bfloat16-trained model like any other.
    predicted = run_python(["-m", "tools.predict", "--model", "all", "--test-index", "0", "1"], environment,
                           cwd=project)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "test image 1 (true: " in predicted.stdout, predicted.stdout
    for model in project_params()["models"]:
        assert predicted.stdout.count(f"\n  {model}: ") == 2, predicted.stdout

    # A forced rerun on the same machine gives the same bytes: model, metrics and per-epoch plot data.
    run(["dvc", "repro", "-f", "train@arch-1"], project, environment)
    assert locked_outputs(project, "train@arch-1") == bfloat16_outputs
