"""Breaks the code on purpose, one change at a time, and checks that the tests named for it then fail.

    .venv/bin/python scripts/check_mutations.py [--only NAME ...] [--output mutations.md]

Each mutation replaces one exact snippet of one file (refused if the snippet is not there exactly once,
so a mutation cannot silently stop applying), runs its tests with pytest, and restores the file whatever
happens. A mutation whose tests still pass is a hole in the suite: the script exits 1 and says which.
Prints a Markdown table: mutation, the failing tests, seconds.
"""

import argparse
import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Mutation:
    name: str
    file: str
    original: str
    mutated: str
    tests: list[str]


MUTATIONS = [
    Mutation(
        "place a worker's outputs without comparing its inputs",
        "cluster/placement.py",
        "    difference = lineage.first_difference(worker_entry, ours)\n",
        "    difference = None\n",
        ["tests/test_cluster_grid.py::test_an_edit_while_a_stage_trains_gets_its_result_refused_and_nothing_recorded"],
    ),
    Mutation(
        "record without checking again under DVC's lock",
        "cluster/placement.py",
        "            stage = _check(repo, name, entry)\n",
        "            (stage,) = repo.stage.collect(name)\n            stage.save_deps()\n",
        ["tests/test_cluster_grid.py::test_an_edit_between_the_two_checks_is_caught_and_everything_is_put_back"],
    ),
    Mutation(
        "resume a stale checkpoint (made from other inputs) and return its epoch",
        "stages/checkpoint.py",
        "        if recorded != self.inputs_fingerprint:\n",
        "        if False:\n",
        ["tests/test_checkpoint.py::test_a_checkpoint_from_other_inputs_is_discarded_and_training_starts_at_epoch_1"],
    ),
    Mutation(
        "swap two models' names on the page",
        "tools/digit_page.py",
        "            for name, (model, class_names, seed) in self.models.items():\n",
        "            for name, (model, class_names, seed) in zip(reversed(self.models), self.models.values()):\n",
        ["tests/test_digit_page.py::test_every_loaded_model_answers_with_its_top_three_and_the_missing_ones_are_named"],
    ),
    Mutation(
        "Holm without the running maximum",
        "stages/compare.py",
        "        running = max(running, min(1.0, (count - rank) * p_values[index]))\n",
        "        running = min(1.0, (count - rank) * p_values[index])\n",
        ["tests/test_evaluate_compare.py"],
    ),
    Mutation(
        "remove a stage's module from its deps (checkpoint.py from train)",
        "dvc.yaml",
        "      - stages/checkpoint.py\n",
        "",
        ["tests/test_pipeline.py::test_each_stage_depends_on_exactly_the_stage_modules_it_imports"],
    ),
    Mutation(
        "decode an image whatever its pixel count",
        "tools/digit_image.py",
        "    if size[0] * size[1] > MAX_PIXELS:\n",
        "    if False:\n",
        ["tests/test_predict.py::test_an_image_over_the_pixel_budget_is_refused_from_its_header_in_one_line"],
    ),
    Mutation(
        "leave squared paper's lines in the ink",
        "tools/digit_image.py",
        "        if _rule_count(ruled) >= MINIMUM_RULES:\n",
        "        if False:\n",
        ["tests/test_predict.py::test_digits_on_squared_paper_give_the_input_of_plain_paper_and_are_read_right"],
    ),
    Mutation(
        "open any format Pillow knows (EPS included)",
        "tools/digit_image.py",
        "            image = Image.open(source, formats=ACCEPTED_FORMATS)\n",
        "            image = Image.open(source)\n",
        ["tests/test_predict.py::test_a_format_off_the_list_is_refused_with_the_list"],
    ),
    Mutation(
        "decode JPEGs at full size (no draft)",
        "tools/digit_image.py",
        "            image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))\n",
        "            pass\n",
        ["tests/test_predict.py::test_a_48_megapixel_phone_photo_passes_the_budget_and_is_read_right"],
    ),
    Mutation(
        "the report's band from the first seed, not the lowest",
        "stages/report.py",
        '                    "low": min(values),\n',
        '                    "low": values[0],\n',
        ["tests/test_report.py"],
    ),
    Mutation(
        "split -S values on every comma, lists too",
        "cluster/grid.py",
        '        if character == "," and depth == 0:\n',
        '        if character == ",":\n',
        ["tests/test_cluster.py::test_grid_overrides_expand_like_dvcs"],
    ),
    Mutation(
        "ship local secrets to the workers",
        "cluster/snapshot.py",
        '".dvc/tmp", ".dvc/config.local",\n',
        '".dvc/tmp",\n',
        [
            "tests/test_cluster_parts.py::test_a_snapshot_leaves_out_data_secrets_and_the_lock_and_its_digest_follows_every_byte"
        ],
    ),
    Mutation(
        "decode every upload at once (no decoding slots)",
        "tools/digit_page.py",
        "    slot_count = decoding_slots or os.cpu_count() or 1\n",
        "    slot_count = 40\n",
        ["tests/test_digit_page.py::test_twelve_large_uploads_under_the_budget_are_decoded_one_per_core_at_a_time"],
    ),
    Mutation(
        "a retried task does not restore the stored checkpoint",
        "cluster/worker.py",
        "            store.restore(key, root / checkpoint_dir)\n",
        "",
        ["tests/test_cluster.py::test_a_killed_worker_node_loses_its_task_to_the_other_node_which_resumes_it"],
    ),
]


def run(mutation: Mutation) -> tuple[bool, list[str], float]:
    """Applies `mutation`, runs its tests, restores the file: (whether they failed, the failing tests, seconds)."""
    path = ROOT / mutation.file
    original = path.read_text()
    if original.count(mutation.original) != 1:
        raise SystemExit(f"check_mutations: {mutation.name}: the snippet is not in {mutation.file} exactly once")
    started = time.monotonic()
    try:
        path.write_text(original.replace(mutation.original, mutation.mutated))
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=", *mutation.tests],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        path.write_text(original)
    failing = re.findall(r"^FAILED (\S+)", completed.stdout, flags=re.MULTILINE)
    return completed.returncode == 1 and bool(failing), failing, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only the mutations whose name contains one of these")
    parser.add_argument("--output", type=Path, help="also write the table here")
    arguments = parser.parse_args()
    chosen = [m for m in MUTATIONS if not arguments.only or any(word in m.name for word in arguments.only)]
    lines = ["| mutation | caught by (failing test) | seconds |", "|---|---|---:|"]
    survivors = []
    for mutation in chosen:
        caught, failing, seconds = run(mutation)
        if not caught:
            survivors.append(mutation.name)
        shown = ", ".join(f"`{test.split('::')[-1]}`" for test in failing) or "**nothing: survived**"
        lines.append(f"| {mutation.name} (`{mutation.file}`) | {shown} | {seconds:.0f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    if arguments.output:
        arguments.output.write_text(table)
    print(table)
    if survivors:
        raise SystemExit(f"check_mutations: not caught: {'; '.join(survivors)}")


if __name__ == "__main__":
    main()
