"""The page to draw a digit: its server over HTTP, bad uploads, a bounded load, and the page in a real browser."""

import base64
import concurrent.futures
import http.client
import io
import json
import shutil
import subprocess
import sys
import threading
import urllib.request

import pytest
from PIL import Image

from harness import page_server
from harness.digit_pictures import drawn_closed_four, photo, rendered_digit
from harness.page_server import peak_resident_bytes, reset_peak_resident
from tests.conftest import PROJECT_ROOT, free_ports, next_digit
from tools import browser, figures
from tools.digit_image import encoded

UPLOAD_LIMIT_MB = 1


@pytest.fixture(scope="module")
def page_models(trained_models_dir, tmp_path_factory):
    """Two trained models that read differently, conv3_pool and arch (the fixture's: every digit read as the
    next one), and the rest of params.yaml's `models` missing."""
    models = tmp_path_factory.mktemp("page") / "models"
    for name in ("conv3_pool", "arch"):
        shutil.copytree(trained_models_dir / f"models/{name}", models / name)
    return models


@pytest.fixture(scope="module")
def page(trained_models_dir, page_models, isolated_environment):
    """The page's server, started as a user starts it, over the two models; stopped by PID afterwards."""
    options = ("--max-upload-mb", str(UPLOAD_LIMIT_MB))
    with page_server.running_page(trained_models_dir, isolated_environment, page_models, free_ports()[0],
                                *options) as (url, server):  # fmt: skip
        yield url, server


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_every_loaded_model_answers_with_its_top_three_and_the_missing_ones_are_named(page):
    url, _ = page
    models = get_json(url + "models")
    assert models["loaded"] == [{"model": "conv3_pool", "seed": 1}, {"model": "arch", "seed": 1}]
    assert set(models["missing"]) == {"conv5_pool", "conv7_pool", "conv3_dropout"}
    assert "run `dvc repro train@conv5_pool-1` to train it, or `dvc pull`" in models["missing"]["conv5_pool"]

    status, answer = page_server.post(url + "predict", encoded(photo(rendered_digit("2", 260, 50, 235)), "JPEG"),
                                    "image/jpeg")  # fmt: skip
    assert status == 200, answer
    assert [row["model"] for row in answer["answers"]] == ["conv3_pool", "arch"]
    for row, digit in zip(answer["answers"], ("2", next_digit("2")), strict=True):
        probabilities = [choice["probability"] for choice in row["top"]]
        assert len(row["top"]) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert row["top"][0]["class"] == digit and sum(probabilities) <= 1.001
    assert answer["agreement"] == "models disagree: conv3_pool says 2, arch says 3"
    seen = Image.open(io.BytesIO(base64.b64decode(answer["input_png"].removeprefix("data:image/png;base64,"))))
    assert seen.size == (28, 28) and seen.getextrema() == (0, 255)


def raw_post(url: str, body, content_type: str | None, chunked: bool = False) -> tuple[int, str]:
    """POST with http.client, so that the headers are exactly these (no Content-Length when chunked)."""
    address = url.removeprefix("http://").rstrip("/")
    connection = http.client.HTTPConnection(address, timeout=60)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        connection.request("POST", "/predict", body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, json.loads(response.read()).get("error", "")
    finally:
        connection.close()


def bomb_png(side: int) -> bytes:
    """A PNG of side x side pixels in mode 1: 90 KB at 20,000, 400 megapixels once decoded."""
    return encoded(Image.new("1", (side, side), 1))


def test_twelve_bombs_at_once_cost_the_server_no_memory_and_it_answers_after(page):
    """Issue 21 saw 12 uploads of a 12,000 x 12,000 PNG at once drive the server to 4.06 GB. Refused from the
    header, they decode nothing: the server's peak resident memory grows by less than 50 MB."""
    url, server = page
    reset_peak_resident(server.pid)  # measured from now, whatever ran on this server before
    before = peak_resident_bytes(server.pid)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: raw_post(url, bomb_png(12_000), "image/png"), range(12)))
    assert {status for status, _ in answers} == {413}, answers
    grown = peak_resident_bytes(server.pid) - before
    print(f"peak resident memory: {before / 1e6:.0f} MB before, grown by {grown / 1e6:.1f} MB")
    assert grown < 50e6
    status, answer = page_server.post(url + "predict", encoded(rendered_digit("3", 200)), "image/png")
    assert status == 200 and answer["answers"][0]["top"][0]["class"] == "3"


def test_twelve_large_uploads_under_the_budget_are_decoded_one_per_core_at_a_time(page):
    """A 62-megapixel image passes the budget and costs about 125 MB to decode (measured alone). Twelve at once,
    decoded together, would hold about 1.5 GB; one per core at a time (2 here) stays under 600 MB."""
    url, server = page
    large = bomb_png(7_900)  # blank, so each is refused (422) only after it was decoded
    reset_peak_resident(server.pid)  # measured from now, whatever ran on this server before
    before = peak_resident_bytes(server.pid)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: raw_post(url, large, "image/png"), range(12)))
    assert {status for status, _ in answers} == {422} and "blank image" in answers[0][1], answers
    grown = peak_resident_bytes(server.pid) - before
    print(f"peak resident memory grown by {grown / 1e6:.0f} MB for 12 concurrent 62-megapixel uploads")
    assert grown < 600e6


def test_a_request_that_waits_too_long_for_a_decoding_slot_gets_503_with_retry_after(
    trained_models_dir, page_models, isolated_environment
):
    large = bomb_png(7_900)  # a quarter to one second to decode, by machine
    options = ("--decoding-slots", "1", "--queue-seconds", "0.05")
    # Eight uploads released together: one takes the slot, and the others cannot all get it within 0.05 s.
    together = threading.Barrier(8)
    with page_server.running_page(trained_models_dir, isolated_environment, page_models, free_ports()[0],
                                *options) as (url, _):  # fmt: skip

        def post_large(_):
            connection = http.client.HTTPConnection(url.removeprefix("http://").rstrip("/"), timeout=60)
            try:
                connection.connect()
                together.wait(timeout=60)
                connection.request("POST", "/predict", body=large, headers={"Content-Type": "image/png"})
                response = connection.getresponse()
                return response.status, response.getheader("Retry-After"), json.loads(response.read())["error"]
            finally:
                connection.close()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post_large, range(8)))
    statuses = sorted(status for status, _, _ in answers)
    assert 422 in statuses and 503 in statuses, answers  # one decoded (a blank image), the others turned away
    for status, retry_after, message in answers:
        if status == 503:
            assert retry_after == "5" and message == "busy: every decoding slot was taken for 0.05 s; try again"


def test_a_digit_on_squared_paper_is_read_right_on_the_page(page, tmp_path):
    url, _ = page
    status, answer = page_server.post(url + "predict", drawn_closed_four(tmp_path, 12).read_bytes(), "image/png")
    assert status == 200, answer
    assert [row["top"][0]["class"] for row in answer["answers"]] == ["4", next_digit("4")], answer


def test_bad_uploads_get_a_4xx_with_a_message_and_the_server_keeps_running(page):
    url, server = page
    whole = encoded(rendered_digit("3", 200))
    megabyte = 1_000_000
    oversized = encoded(Image.effect_noise((1200, 1200), 80))  # noise does not compress: over 1 MB
    assert len(oversized) > UPLOAD_LIMIT_MB * megabyte
    cases = [
        ("not an image", b"just some text, not a picture", "image/png", False, 422,
         "upload: not an image in an accepted format; expected PNG, JPEG, GIF, BMP, TIFF or WebP"),
        ("EPS", encoded(rendered_digit("3", 100), "EPS"), "image/x-eps", False, 422,
         "upload: not an image in an accepted format; expected PNG, JPEG, GIF, BMP, TIFF or WebP"),
        ("header-only bomb", bomb_png(20_000), "image/png", False, 413,
         "upload: 400.0 megapixels: expected at most 64 megapixels"),
        ("below Pillow's threshold", bomb_png(12_000), "image/png", False, 413,
         "upload: 144.0 megapixels: expected at most 64 megapixels"),
        ("truncated", whole[: len(whole) // 2], "image/png", False, 422, "upload: truncated or unreadable image"),
        ("blank", encoded(Image.new("L", (200, 200), 255)), "image/png", False, 422, "upload: blank image"),
        ("wrong type", whole, "text/plain", False, 415, "Content-Type 'text/plain': expected an image type"),
        ("no type", whole, None, False, 415, "Content-Type '(none)': expected an image type"),
        ("empty", b"", "image/png", False, 400, "the request body is empty"),
        ("over the limit", oversized, "image/png", False, 413, f"expected at most {UPLOAD_LIMIT_MB} MB"),
        # No Content-Length to check up front: cut off while it streams in.
        ("over, chunked", iter([oversized[i : i + 65536] for i in range(0, len(oversized), 65536)]), "image/png",
         True, 413, "upload of more than 1,000,000 bytes"),
    ]  # fmt: skip
    for name, body, content_type, chunked, expected_status, expected_message in cases:
        status, message = raw_post(url, body, content_type, chunked)
        assert (status, expected_message in message) == (expected_status, True), (name, status, message)
        assert server.poll() is None, name
    status, answer = page_server.post(url + "predict", whole, "image/png")
    assert status == 200 and answer["answers"][0]["top"][0]["class"] == "3"


def test_a_bounded_load_of_200_requests_8_at_a_time_has_no_failures(page):
    url, server = page
    result = page_server.fire(url, page_server.sample_bodies(), requests=200, concurrency=8)
    print(json.dumps(result))  # the latencies, for the record (pytest -s)
    assert result["failures"] == [] and server.poll() is None
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"]


def drawn(opened, strokes: list[list[tuple[float, float]]], touch: bool = False) -> dict[str, list[tuple[str, float]]]:
    """Draws `strokes` (points in 0-1 of the pad) with the mouse or a finger, presses "Read it", and reads
    the table."""
    opened.page.click("#clear")
    opened.draw("#pad", strokes, touch=touch)
    return answers_on(opened, lambda: opened.page.click("#read"))


def answers_on(opened, action) -> dict[str, list[tuple[str, float]]]:
    """Does `action`, then, once the page has answered, per model row of its table the three (class,
    probability) cells. The state is set to "pending" first: the page marks itself busy only once the
    drawing is encoded, so without it an old answer could be read."""
    opened.page.evaluate("document.body.dataset.state = 'pending'")
    action()
    opened.page.wait_for_function("!['pending', 'busy'].includes(document.body.dataset.state)", timeout=30_000)
    assert opened.page.evaluate("document.body.dataset.state") == "answered", opened.page.inner_text("#message")
    return opened.page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#answers tbody tr')].map(row =>
             [row.dataset.model, [...row.querySelectorAll('td[data-class]')].map(cell =>
               [cell.dataset.class, Number(cell.dataset.probability)])]))"""
    )


def test_the_page_in_a_real_browser_reads_a_1_drawn_by_mouse_a_7_by_touch_and_an_uploaded_photo(page, tmp_path):
    url, _ = page
    one, seven = [[(0.5, 0.15), (0.5, 0.85)]], figures.DRAWN_SEVEN
    photo_path = tmp_path / "photo_of_a_5.jpg"
    photo(rendered_digit("5", 260, 50, 235)).save(photo_path, quality=70)
    with browser.offline_page(url, width=1000, touch=True) as opened:
        read_one = drawn(opened, one)
        shown = opened.page.evaluate("document.getElementById('model-input').naturalWidth")
        read_seven = drawn(opened, seven, touch=True)
        read_photo = answers_on(opened, lambda: opened.page.set_input_files("#upload", str(photo_path)))
        missing = opened.page.evaluate("[...document.querySelectorAll('#missing li')].map(item => item.dataset.model)")
        assert opened.external_requests == [] and opened.errors == []
    assert shown == 28
    for answers, digit in ((read_one, "1"), (read_seven, "7"), (read_photo, "5")):
        assert list(answers) == ["conv3_pool", "arch"], answers
        assert [top[0][0] for top in answers.values()] == [digit, next_digit(digit)], (digit, answers)
        assert all(len(top) == 3 for top in answers.values()), answers
    assert sorted(missing) == ["conv3_dropout", "conv5_pool", "conv7_pool"]


def test_serve_without_any_trained_model_or_on_a_taken_port_is_one_line(trained_models_dir, tmp_path, page,
                                                                        isolated_environment):  # fmt: skip
    url, _ = page
    taken_port = url.rstrip("/").rsplit(":", 1)[1]
    environment = isolated_environment | {"PYTHONPATH": str(PROJECT_ROOT)}
    for options, expected in (
        (["--models-dir", str(tmp_path / "none")], "no trained model of conv3_pool, conv5_pool"),
        (["--port", taken_port], f"--host 127.0.0.1 --port {taken_port}: cannot listen there"),
    ):
        completed = subprocess.run([sys.executable, "-m", "tools.digit_page", "serve", "--port", "0", *options],
                                   cwd=trained_models_dir, env=environment, capture_output=True, text=True,
                                   timeout=120, check=False)  # fmt: skip
        lines = completed.stderr.strip().splitlines()
        assert completed.returncode == 1 and len(lines) == 1 and expected in lines[0], completed.stderr
