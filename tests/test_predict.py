"""Predicting digits: MNIST-style conversion of drawn images, and the study's test images."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from harness.digit_pictures import (
    canvas_export,
    cmyk_jpeg,
    drawn_closed_four,
    exif_rotated,
    multi_frame_tiff,
    on_squared_paper,
    palette_image,
    photo,
    photo_of,
    rendered_digit,
)
from stages.errors import DataError
from tests.conftest import PROJECT_ROOT, next_digit
from tools import digit_image, predict


def test_mnist_style_inverts_crops_fits_20_by_20_and_centres_by_mass():
    converted = digit_image.mnist_style(rendered_digit("7"))
    assert converted.shape == (28, 28) and converted.dtype == np.float32
    assert converted.max() == pytest.approx(1.0) and converted.min() == 0.0
    assert converted[0].max() == 0 and converted[:, 0].max() == 0  # inverted: a dark background
    rows = np.flatnonzero(converted.max(axis=1) > 0)
    columns = np.flatnonzero(converted.max(axis=0) > 0)
    assert max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1) == 20
    centre = [(converted.sum(axis=axis) * np.arange(28)).sum() / converted.sum() for axis in (1, 0)]
    assert centre == pytest.approx([13.5, 13.5], abs=1.0)


def test_blank_image_and_non_image_are_clear_errors(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 40), 255).save(blank)
    with pytest.raises(DataError, match="blank.png: blank image: no digit-like ink"):
        digit_image.load(blank)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match="notes.png: not an image in an accepted format; expected PNG, JPEG"):
        digit_image.load(text)


def test_top_classes_are_sorted_by_probability():
    ranked = predict.top_classes(np.array([0.1, 0.6, 0.05, 0.25]), ["a", "b", "c", "d"])
    assert ranked == [("b", 0.6), ("d", 0.25), ("a", 0.1)]


# Digits whose printed shape is close to a handwritten one (a printed 1 has serifs MNIST's lack), at three sizes.
DRAWN_DIGITS = (
    ("0", 90),
    ("2", 200),
    ("3", 500),
    ("4", 200),
    ("5", 150),
    ("6", 120),
    ("7", 280),
    ("8", 200),
    ("9", 240),
)


def run_predict(root, *arguments) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.predict",
            "--models-dir",
            str(root / "models"),
            "--test-data",
            str(root / "data/prepared/test.npz"),
            *arguments,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": ""},
    )


def top_answer(line: str) -> str:
    """The top class of a line `<image>[ (true: d)]: c p, c p, c p[ (low confidence: a guess)]`."""
    return line.split(": ", 2 if "(true: " in line else 1)[-1].split(" ")[0]


def test_predicts_the_study_sample_test_images(trained_models_dir):
    completed = run_predict(trained_models_dir, "--model", "conv3_pool", "--test-index", "500", "1500", "2500")
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "test image 500 (true",
        "test image 1500 (true",
        "test image 2500 (true",
    ]
    for line, digit in zip(lines, "372", strict=True):
        top_class = top_answer(line)
        assert f"(true: {digit})" in line and top_class == digit
        assert len(line.split(", ")) == 3  # the top three classes


def test_predicts_rendered_digits_of_any_size(trained_models_dir, tmp_path):
    paths = []
    for digit, size in DRAWN_DIGITS:
        path = tmp_path / f"digit_{digit}.png"
        rendered_digit(digit, size).save(path)
        paths.append(str(path))
    completed = run_predict(trained_models_dir, "--model", "conv3_pool", *paths)
    assert completed.returncode == 0, completed.stderr
    predicted = [top_answer(line) for line in completed.stdout.strip().splitlines()]
    # Printed digits are not handwriting, and a model trained for 3 epochs on another CPU's kernels may
    # read one of the nine otherwise; more than one miss means the conversion is off.
    misses = [(digit, read) for (digit, _), read in zip(DRAWN_DIGITS, predicted, strict=True) if digit != read]
    assert len(predicted) == len(DRAWN_DIGITS) and len(misses) <= 1, misses


def test_missing_model_names_the_stage_to_run(trained_models_dir):
    completed = run_predict(trained_models_dir, "--model", "conv5_pool", "--test-index", "0")
    assert completed.returncode == 1
    assert "no trained model 'conv5_pool' for seed 1; run `dvc repro train@conv5_pool-1`" in completed.stderr
    assert "or `dvc pull`" in completed.stderr and "Traceback" not in completed.stderr


def test_the_ink_of_a_transparent_canvas_export_is_its_alpha(tmp_path):
    converted = digit_image.load(canvas_export("7", tmp_path))
    assert converted.max() == pytest.approx(1.0) and converted[0].max() == 0


def test_a_truncated_file_is_one_line_naming_it(trained_models_dir, tmp_path):
    whole = tmp_path / "whole.png"
    rendered_digit("3", 200).save(whole)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    completed = run_predict(trained_models_dir, "--model", "conv3_pool", str(truncated))
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert (
        completed.stderr.strip().splitlines() == [completed.stderr.strip().splitlines()[0]]
        and f"{truncated}: truncated or unreadable image" in completed.stderr
    )


def test_photos_canvas_exports_exif_palette_cmyk_and_multi_page_images_are_read_right(trained_models_dir, tmp_path):
    made = [
        ("2", photo_of("2", tmp_path)),
        ("5", photo_of("5", tmp_path)),
        ("7", canvas_export("7", tmp_path)),
        ("3", canvas_export("3", tmp_path)),
        ("4", exif_rotated("4", tmp_path)),
        ("6", palette_image("6", tmp_path)),
        ("8", cmyk_jpeg("8", tmp_path)),
        ("9", multi_frame_tiff("9", tmp_path)),
    ]
    shown = tmp_path / "seen.png"
    completed = run_predict(trained_models_dir, "--model", "conv3_pool", *[str(path) for _, path in made])
    assert completed.returncode == 0, completed.stderr
    predicted = [top_answer(line) for line in completed.stdout.strip().splitlines()]
    assert predicted == [digit for digit, _ in made], completed.stdout
    one = run_predict(trained_models_dir, "--model", "conv3_pool", str(made[0][1]), "--show-input", str(shown))
    assert one.returncode == 0, one.stderr
    with Image.open(shown) as picture:
        assert picture.height == 280 and picture.width > 280 * 2


def test_all_models_are_asked_by_name_and_their_disagreement_is_said(trained_models_dir):
    # conv3_pool and a deliberately different "arch" (the fixture's: every digit read as the next one).
    completed = run_predict(trained_models_dir, "--model", "all", "--test-index", "500")
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[0] == "test image 500 (true: 3):"
    assert lines[1].startswith("  conv3_pool: 3 ") and lines[2].startswith(f"  arch: {next_digit('3')} ")
    assert lines[3] == "  models disagree: conv3_pool says 3, arch says 4"


def test_agreement_and_disagreement_are_worded_from_the_answers():
    assert predict.agreement({"conv3_pool": "7", "arch": "7", "conv5_pool": "7"}) == "all 3 models agree: 7"
    assert predict.agreement({"conv3_pool": "7", "arch": "1"}) == "models disagree: conv3_pool says 7, arch says 1"


def test_a_low_top_probability_is_flagged_as_a_guess():
    guess = predict.describe([("4", 0.383), ("0", 0.294), ("2", 0.292)])
    assert guess == "4 0.383, 0 0.294, 2 0.292 (low confidence: a guess)"
    assert predict.describe([("7", 0.934), ("2", 0.054), ("3", 0.008)]) == "7 0.934, 2 0.054, 3 0.008"


def header_only_bomb(path, side: int):
    """A PNG of side x side pixels in mode 1 whose file is tiny (90 KB at 20,000): its header is the threat."""
    Image.new("1", (side, side), 1).save(path)
    return path


@pytest.mark.parametrize(
    ("side", "described"),
    [
        (20_000, "400.0 megapixels"),  # above Pillow's error threshold (179 megapixels): DecompressionBombError
        (12_000, "144.0 megapixels"),  # between its warning and error thresholds: DecompressionBombWarning
        (8_500, "8,500 x 8,500 pixels (72.2 megapixels)"),  # under Pillow's, over ours
    ],
)  # fmt: skip
def test_an_image_over_the_pixel_budget_is_refused_from_its_header_in_one_line(trained_models_dir, tmp_path, side,
                                                                               described):  # fmt: skip
    bomb = header_only_bomb(tmp_path / "bomb.png", side)
    assert bomb.stat().st_size < 200_000
    completed = run_predict(trained_models_dir, "--model", "conv3_pool", str(bomb))
    assert completed.returncode == 1
    # One line, and no warning of Pillow's (DecompressionBombWarning) or traceback before it.
    assert completed.stderr.strip() == (
        f"predict: error: {bomb}: {described}: expected at most 64 megapixels (a photo of the digit)"
    )


def test_a_48_megapixel_phone_photo_passes_the_budget_and_is_read_right(trained_models_dir, tmp_path):
    # 8,064 x 6,048 is what 48-megapixel phone cameras write; a JPEG, so it is decoded at reduced scale.
    big = tmp_path / "phone.jpg"
    photo(rendered_digit("5", 260, 50, 235)).resize((8064, 6048), Image.Resampling.BICUBIC).save(big, quality=85)
    completed = run_predict(trained_models_dir, "--model", "conv3_pool", str(big))
    assert completed.returncode == 0, completed.stderr
    assert top_answer(completed.stdout.strip()) == "5"
    # Decoded at 1/8 scale (Pillow's draft: the largest reduction that keeps it at least 400 wide and high).
    assert digit_image.open_image(big).size == (8064 // 8, 6048 // 8)


def test_a_format_off_the_list_is_refused_with_the_list(tmp_path):
    eps = tmp_path / "digit.eps"
    rendered_digit("3", 100).save(eps, "EPS")  # Pillow writes EPS itself; reading it back would run Ghostscript
    assert eps.read_bytes().startswith(b"%!PS-Adobe")
    for path in (eps, tmp_path / "digit.ico"):
        if path.suffix == ".ico":
            rendered_digit("3", 64).save(path, "ICO")
        with pytest.raises(DataError) as raised:
            digit_image.load(path)
        assert (
            str(raised.value)
            == f"{path}: not an image in an accepted format; expected PNG, JPEG, GIF, BMP, TIFF or WebP"
        )


def test_digits_on_squared_paper_give_the_input_of_plain_paper_and_are_read_right(trained_models_dir, tmp_path):
    # Exercise-book paper: light grid lines every 12 and every 25 pixels at 400x400, digits in grey pencil,
    # among them the ones with enclosed paper (0, 4, 6, 9) that a wrong polarity would read as ink.
    for digit in "04697":
        plain = tmp_path / f"plain_{digit}.png"
        rendered_digit(digit, 400, ink=110, paper=245).save(plain)
        for spacing in (12, 25):
            squared = digit_image.load(on_squared_paper(digit, spacing, tmp_path))
            difference = np.abs(squared - digit_image.load(plain)).max()
            assert difference < 0.1, (digit, spacing, difference)  # measured: at most 0.08, where rules crossed ink
    # The model's reading (matplotlib's bold 4 reads as a guess even on plain paper: a drawn closed 4 instead).
    made = [(digit, on_squared_paper(digit, spacing, tmp_path)) for spacing in (12, 25) for digit in "0697"]
    made += [("4", drawn_closed_four(tmp_path, spacing)) for spacing in (12, 25)]
    # Photographed: the sheet on a darker table, 4 degrees of rotation (the grid no longer runs along the rows),
    # uneven light, blur, JPEG. And the same bold 0, 6 and 9 on plain paper, which the sheet's bright mass (with
    # the digit's hole in it) once outvoted.
    for digit, sheet in [(digit, on_squared_paper(digit, 12, tmp_path)) for digit in "069"] + [
        ("4", drawn_closed_four(tmp_path, 25))
    ]:
        photographed = tmp_path / f"photo_{sheet.stem}.jpg"
        photo(Image.open(sheet).resize((260, 260))).save(photographed, quality=80)
        made.append((digit, photographed))
    for digit in "069":
        made.append((digit, photo_of(digit, tmp_path)))
    completed = run_predict(trained_models_dir, "--model", "conv3_pool", *[str(path) for _, path in made])
    assert completed.returncode == 0, completed.stderr
    predicted = [top_answer(line) for line in completed.stdout.strip().splitlines()]
    assert predicted == [digit for digit, _ in made], completed.stdout


def test_grid_lines_are_removed_and_lines_of_a_digit_are_kept():
    # By construction: three full-width rules of ink 0.3 and one digit-like bar; the rules go, the bar stays.
    ink = np.zeros((100, 100), dtype=np.float32)
    ink[[20, 50, 80], :] = 0.3
    ink[30:70, 48:52] = 0.9  # a 1's vertical stroke, 40% of the height
    cleaned, ruled = digit_image.ruled_lines_removed(ink)
    assert ruled
    expected = np.zeros_like(ink)
    expected[30:70, 48:52] = 0.9
    expected[50, 48:52] = 0.9 - 0.3  # where a rule crosses the stroke, the rule's ink is taken off
    np.testing.assert_allclose(cleaned, expected, atol=1e-6)
    # Two long strokes (a 7's bar and a 1 spanning the picture) are not ruled paper: left alone.
    strokes = np.zeros((100, 100), dtype=np.float32)
    strokes[10, :] = 0.9
    strokes[:, 50] = 0.9
    kept, ruled = digit_image.ruled_lines_removed(strokes)
    assert not ruled and np.array_equal(kept, strokes)
