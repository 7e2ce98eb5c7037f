"""`dvc plots show` renders every chart offline, in a real browser (Debian's Chromium), with the report's charts."""

import json
import re

import pytest

from tests.conftest import run
from tools import browser


def declared_plots(project, environment, *revisions: str) -> dict[str, list[dict]]:
    """What `dvc plots show --json` (or `dvc plots diff --json`) lists: plot id -> its renderers."""
    command = ["dvc", "plots", "diff", *revisions, "--json"] if revisions else ["dvc", "plots", "show", "--json"]
    return json.loads(run(command, project, environment).stdout)["data"]


def check_page_renders_everything(page_path, plots: dict[str, list[dict]]) -> list[str]:
    """Every declared Vega plot drawn (not blank), every image loaded, nothing asked of the network; returns the
    charts' container ids in the order the page shows them."""
    renderers = [renderer for renderer_list in plots.values() for renderer in renderer_list]
    vega = sum(renderer["type"] == "vega" for renderer in renderers)
    images = sum(renderer["type"] == "image" for renderer in renderers)
    with browser.offline_page(page_path) as opened:
        opened.wait_for_charts(vega)
        charts = opened.chart_ink()
        widths = opened.image_widths()
        assert opened.external_requests == []
        assert opened.errors == []
    assert len(charts) == vega
    assert [chart["id"] for chart in charts if chart["ink"] < 500] == []  # blank: nothing drawn but background
    assert len(widths) == images and all(width > 0 for width in widths.values()), widths
    return [chart["id"] for chart in charts]


@pytest.mark.pipeline
def test_plots_show_renders_every_chart_offline_and_the_report_compares_the_models(
    reproduced_project, isolated_environment
):
    project, environment = reproduced_project, isolated_environment
    plots = declared_plots(project, environment)
    report = {plot for plot in plots if plot.startswith("plots/report/")}
    assert report == {
        "plots/report/validation_accuracy.csv", "plots/report/validation_loss.csv",
        "plots/report/accuracy_vs_parameters.csv", "plots/report/confusion_errors.csv",
        "plots/report/sample_predictions.png", "plots/report/confident_errors.png",
    }  # fmt: skip
    # Every model on one chart: the validation curves hold a line per model in params.yaml.
    curve = plots["plots/report/validation_accuracy.csv"][0]["content"]["data"]["values"]
    assert {row["model"] for row in curve} == {"conv3_pool", "conv5_pool", "conv7_pool", "conv3_dropout", "arch"}
    run(["dvc", "plots", "show"], project, environment)
    order = check_page_renders_everything(project / "dvc_plots/index.html", plots)
    # The page opens on the comparison: the report's four charts before any run's own.
    assert all("report" in chart for chart in order[:4]) and not any("report" in chart for chart in order[4:]), order


@pytest.mark.pipeline
def test_plots_diff_of_two_experiments_overlays_them_offline(reproduced_project, isolated_environment):
    project, environment = reproduced_project, isolated_environment
    run(["dvc", "exp", "run", "-n", "kernel-5", "-S", "arch.kernel=5"], project, environment)
    targets = ["plots/report/validation_accuracy.csv", "plots/report/accuracy_vs_parameters.csv"]
    plots = {
        plot: renderers
        for plot, renderers in declared_plots(project, environment, "HEAD", "kernel-5").items()
        if plot in targets
    }
    for plot in targets:
        revisions = {row["rev"] for row in plots[plot][0]["content"]["data"]["values"]}
        assert revisions == {"HEAD", "kernel-5"}, plot
    run(["dvc", "plots", "diff", "HEAD", "kernel-5", "--targets", *targets, "-o", "diff_page"], project, environment)
    check_page_renders_everything(project / "diff_page/index.html", plots)


@pytest.mark.pipeline
def test_without_setup_plots_show_renders_with_dvcs_own_page_instead_of_failing(
    reproduced_project, isolated_environment
):
    from tests.conftest import PROJECT_ROOT

    # The committed config names no template, so a clone that never ran scripts/setup.sh has none to miss.
    assert "html_template" not in (PROJECT_ROOT / ".dvc/config").read_text()
    project, environment = reproduced_project, isolated_environment
    run(["dvc", "config", "--local", "--unset", "plots.html_template"], project, environment)
    (project / ".dvc/offline-plots.html").unlink()
    run(["dvc", "plots", "show"], project, environment)  # fails on a template it cannot find
    page = (project / "dvc_plots/index.html").read_text()
    # DVC's own page: the libraries linked from a CDN, not inlined.
    assert re.search(r'<script src="https://[^"]+/npm/vega@[0-9.]+"></script>', page), page[:2000]
