"""Which values of one parameter change a model's test accuracy: a sweep's experiments against their baseline.

    dvc exp run --queue -S 'arch.kernel=2,4,5,6,7' && dvc queue start -j 1
    python -m tools.sweep --param arch.kernel --model arch --output docs/kernel_sweep.md
    python -m tools.sweep --param train.precision --model all --experiment bf16-three-seeds

With several models (or `all`), each model's values are tested against its own baseline and
Holm's correction spans every test in the table. `--experiment` keeps only the named experiments.

`compare` tests models against each other within one run of the pipeline; a sweep's points are
separate experiments. This reads them all from `dvc exp show --json` (the baseline commit, whose
value is the reference, and every experiment on it), takes the model's per-seed test accuracies
from `metrics/evaluate/<model>/seed-<seed>.json`, and tests each value against the baseline's
with the comparison's statistics (stages/statistics.py): Welch's t-test and the equivalence test,
Holm-corrected across the values, and the same three verdicts: different, equivalent within the
margin (compare.equivalence_margin), or undecided with the seeds that would likely decide it.
A value that is a list or a mapping (a whole `arch.layers`, say) is shown as its JSON.
"""

import argparse
import json
import re
import subprocess
from pathlib import Path

from stages import artifacts, cli, compare, params, statistics
from stages.errors import DataError, ParamsError, SourceError


def point(data: dict, param: str, model: str) -> tuple[object, dict] | None:
    """One experiment's (or the baseline's) value of `param` and the model's per-seed results, from its data."""
    try:
        value = params.select(data.get("params", {}).get("params.yaml", {}).get("data", {}), param)
    except ParamsError:
        value = None  # an experiment from before the parameter existed
    evaluated = rf"metrics/evaluate/{re.escape(model)}/seed-(\d+)\.json"
    accuracies = {}
    parameters = None
    for path, metrics in (data.get("metrics") or {}).items():
        found = re.fullmatch(evaluated, path)
        if found and metrics.get("data"):
            accuracies[int(found.group(1))] = metrics["data"]["test"]["accuracy"]
        if path.startswith(f"metrics/train/{model}/seed-") and metrics.get("data"):
            parameters = metrics["data"].get("parameters", parameters)
    if value is None or not accuracies:
        return None
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(", ", ": "))  # hashable, and as the user wrote it
    return value, {"accuracies": dict(sorted(accuracies.items())), "parameters": parameters}


def collect(shown: list[dict], param: str, model: str, only: list[str] = ()) -> tuple[object, dict[object, dict]]:
    """From `dvc exp show --json`: the baseline's value, and every value -> its results and experiment name.

    Raises:
        DataError: no baseline holds the model's results, or two experiments share one value.
    """
    baseline_value, points = None, {}
    for baseline in shown:
        if baseline.get("rev") == "workspace":
            continue  # the workspace holds whichever point ran last, not a recorded one
        found = point(baseline.get("data") or {}, param, model)
        if found and baseline_value is None:
            baseline_value = found[0]
            points[found[0]] = {**found[1], "name": f"baseline {baseline['rev'][:7]}"}
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                found = point(revision.get("data") or {}, param, model)
                if not found:
                    continue
                value, results = found
                name = revision.get("name") or revision["rev"][:7]
                if only and name not in only:
                    continue
                if value in points:
                    raise DataError(
                        f"experiments {points[value]['name']!r} and {name!r} both have {param}={value}; "
                        "expected one experiment per value (`dvc exp remove` the other)"
                    )
                points[value] = {**results, "name": name}
    if baseline_value is None:
        raise DataError(f"dvc exp show: no commit holds {model}'s test metrics; expected a baseline run by `dvc repro`")
    return baseline_value, points


def against_baseline(sweeps: dict[str, tuple[object, dict[object, dict]]], margin: float) -> list[dict]:
    """Every value's test accuracy summarized, and each other value tested against its model's baseline.

    Args:
        sweeps: model -> (its baseline's value, its points as `collect` returns them). Holm's
            correction spans every test of every model.
    """
    samples, pairs, ordered = {}, [], []
    for model, (baseline_value, points) in sweeps.items():
        values = sorted(points, key=lambda key: (str(type(key)), key))
        label = {value: str(value) if len(sweeps) == 1 else f"{model} {value}" for value in values}
        samples |= {label[value]: list(points[value]["accuracies"].values()) for value in values}
        pairs += [(label[value], label[baseline_value]) for value in values if value != baseline_value]
        ordered += [(model, value, label[value]) for value in values]
    results = {result["first"]: result for result in statistics.compare_pairs(samples, pairs, margin)}
    return [
        {
            "model": model,
            "value": value,
            "experiment": sweeps[model][1][value]["name"],
            "parameters": sweeps[model][1][value]["parameters"],
            "seeds": len(samples[label]),
            "test_accuracy": statistics.summarize(samples[label]),
            "interval": statistics.mean_interval(samples[label]),
            "test": results.get(label),
        }
        for model, value, label in ordered
    ]


def markdown(param: str, rows: list[dict], margin: float) -> str:
    """The sweep as a table: one row per model and value, the baseline's marked, the verdict counts under it."""
    lines = [
        f"| model | {param} | experiment | parameters | seeds | test accuracy, mean ± sd | 95% CI of the mean "
        f"| difference from the baseline [95% CI] | p (Welch, Holm) | p (equivalence, Holm) | verdict |",
        "|---|---|---|---:|---:|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        cell = statistics.mean_sd_cell(row["test_accuracy"])
        interval = "" if row["interval"] is None else "{:.4f} to {:.4f}".format(*row["interval"])
        parameters = "" if row["parameters"] is None else f"{row['parameters']:,}"
        test = row["test"]
        if test is None:
            difference, p_value, p_equivalence, words = "baseline", "", "", ""
        else:
            difference = f"{test['difference']:+.4f}" + (
                "" if test["interval"] is None else " [{:+.4f}, {:+.4f}]".format(*test["interval"])
            )
            p_value = "" if test["p_holm"] is None else f"{test['p_holm']:.3g}"
            p_equivalence = "" if test["p_equivalence_holm"] is None else f"{test['p_equivalence_holm']:.3g}"
            words = statistics.verdict_words(test, margin)
        lines.append(
            f"| {row['model']} | {row['value']} | {row['experiment']} | {parameters} | {row['seeds']} | {cell} "
            f"| {interval} | {difference} | {p_value} | {p_equivalence} | {words} |"
        )
    counts = statistics.count_verdicts([row["test"] for row in rows if row["test"] is not None])
    lines.append(
        f"\nAgainst the baseline, equivalence margin ±{margin:.4f}, Holm across the {sum(counts.values())} tests: "
        f"{counts['different']} different, {counts['equivalent']} equivalent, {counts['undecided']} undecided."
    )
    return "\n".join(lines) + "\n"


def experiments(revisions: list[str]) -> list[dict]:
    """`dvc exp show --json` for the given baseline commits (HEAD when none), as DVC prints it."""
    command = ["dvc", "exp", "show", "--json", *[argument for rev in revisions for argument in ("--rev", rev)]]
    try:
        shown = subprocess.run(command, capture_output=True, text=True, check=True)
    except FileNotFoundError as error:
        raise SourceError("dvc: not found on PATH; expected the project's environment (scripts/setup.sh)") from error
    except subprocess.CalledProcessError as error:
        last = (error.stderr.strip().splitlines() or ["no output"])[-1]
        raise SourceError(f"{' '.join(command)}: exited with {error.returncode}: {last}") from error
    return json.loads(shown.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--param", required=True, help="the swept parameter, e.g. arch.kernel")
    parser.add_argument("--model", action="append", required=True,
                        help="a model whose test accuracy is compared, e.g. arch; repeat it, or `all`")  # fmt: skip
    parser.add_argument("--experiment", action="append", default=[], help="only this experiment (repeatable)")
    parser.add_argument("--rev", action="append", default=[], help="baseline commit(s) of the sweep (default HEAD)")
    parser.add_argument("--output", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--margin", type=float,
                        help="equivalence margin (default: compare.equivalence_margin in params.yaml)")  # fmt: skip
    arguments = parser.parse_args()
    project_params = params.load_params()
    if arguments.margin is None:
        margin = compare.equivalence_margin(params.select(project_params, "compare.equivalence_margin"))
    elif not 0 < arguments.margin < 1:
        raise ParamsError(f"--margin: got {arguments.margin:g}; expected a difference in test accuracy in (0, 1)")
    else:
        margin = arguments.margin
    models = params.select(project_params, "models") if arguments.model == ["all"] else arguments.model
    shown = experiments(arguments.rev)
    rows = against_baseline(
        {model: collect(shown, arguments.param, model, arguments.experiment) for model in models}, margin
    )
    table = markdown(arguments.param, rows, margin)
    if arguments.output:
        artifacts.write_text_atomic(arguments.output, table)
    print(table, end="")


if __name__ == "__main__":
    cli.run("sweep", main)
