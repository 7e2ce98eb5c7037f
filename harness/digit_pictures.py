"""Pictures of digits made the ways users make them: printed, photographed, drawn on a canvas, rotated by EXIF."""

from pathlib import Path

import numpy as np
from PIL import Image


def rendered_digit(digit: str, size: int = 280, ink: int = 20, paper: int = 245) -> Image.Image:
    """A digit drawn with matplotlib's font, dark on light, at `size` pixels: like a scan of a handwritten one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(size / 100, size / 100), dpi=100)
    figure.patch.set_facecolor(str(paper / 255))
    figure.text(
        0.5, 0.5, digit, fontsize=size * 0.55, ha="center", va="center", color=str(ink / 255), fontweight="bold"
    )
    figure.canvas.draw()
    image = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())).convert("RGB")
    plt.close(figure)
    return image


def photo(sheet: Image.Image) -> Image.Image:
    """A phone photo of `sheet` (a digit on paper), as made here: uneven light, a grey table margin and the
    paper's edge in the frame, a few degrees of rotation, noise and blur."""
    from PIL import ImageFilter

    paper = sheet.convert("L").rotate(4, fillcolor=235, expand=False)
    frame = Image.new("L", (420, 360), 110)  # the table around the sheet
    frame.paste(paper, (110, 50))
    pixels = np.asarray(frame, dtype=np.float32)
    light = np.linspace(0.55, 1.05, pixels.shape[1])[None, :] * np.linspace(0.8, 1.0, pixels.shape[0])[:, None]
    noise = np.random.default_rng(0).normal(0, 6, pixels.shape)
    taken = Image.fromarray(np.clip(pixels * light + noise, 0, 255).astype(np.uint8))
    return taken.filter(ImageFilter.GaussianBlur(1.2)).convert("RGB")


def photo_of(digit: str, tmp_path) -> Path:
    """`photo` of a printed digit, saved as a JPEG of quality 70."""
    path = tmp_path / f"photo_{digit}.jpg"
    photo(rendered_digit(digit, 260, ink=50, paper=235)).save(path, quality=70)
    return path


def canvas_export(digit: str, tmp_path) -> Path:
    """What a drawing canvas exports: dark strokes on a transparent background (RGBA)."""
    strokes = np.asarray(rendered_digit(digit, 200, ink=0, paper=255).convert("L"))
    alpha = (255 - strokes).astype(np.uint8)
    rgba = np.dstack([np.zeros_like(alpha)] * 3 + [alpha])
    path = tmp_path / f"canvas_{digit}.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def exif_rotated(digit: str, tmp_path) -> Path:
    """A JPEG stored sideways with an EXIF orientation tag saying so, as cameras write them."""
    upright = rendered_digit(digit, 220)
    path = tmp_path / f"exif_{digit}.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    upright.rotate(90, expand=True).save(path, exif=exif, quality=92)
    return path


def palette_image(digit: str, tmp_path) -> Path:
    path = tmp_path / f"palette_{digit}.gif"
    rendered_digit(digit, 180).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(path)
    return path


def cmyk_jpeg(digit: str, tmp_path) -> Path:
    """A print shop's file: CMYK JPEG."""
    path = tmp_path / f"cmyk_{digit}.jpg"
    rendered_digit(digit, 200).convert("CMYK").save(path, quality=90)
    return path


def multi_frame_tiff(digit: str, tmp_path) -> Path:
    """A scanner's multi-page TIFF: the digit on the first page, another digit on the second."""
    path = tmp_path / f"pages_{digit}.tif"
    first, second = rendered_digit(digit, 200), rendered_digit("1" if digit != "1" else "0", 200)
    first.save(path, save_all=True, append_images=[second])
    return path


def on_squared_paper(digit: str, spacing: int, tmp_path, side: int = 400) -> Path:
    """A digit in grey pencil on squared paper (an exercise book): light grey lines every `spacing` pixels."""
    paper = np.full((side, side), 245, dtype=np.uint8)
    paper[spacing // 2 :: spacing, :] = 190
    paper[:, spacing // 2 :: spacing] = 190
    pencil = np.asarray(rendered_digit(digit, side, ink=110, paper=245).convert("L"))
    path = tmp_path / f"squared_{digit}_{spacing}.png"
    Image.fromarray(np.minimum(paper, pencil)).save(path)
    return path


def drawn_closed_four(tmp_path, spacing: int = 12, side: int = 400) -> Path:
    """A closed 4 (a triangle and a stem) drawn with a pencil's 9-pixel strokes on squared paper."""
    from PIL import ImageDraw

    paper = np.full((side, side), 245, dtype=np.uint8)
    paper[spacing // 2 :: spacing, :] = 190
    paper[:, spacing // 2 :: spacing] = 190
    picture = Image.fromarray(paper)
    pencil = ImageDraw.Draw(picture)
    pencil.line([(240, 70), (120, 250), (290, 250)], fill=115, width=9, joint="curve")
    pencil.line([(240, 70), (240, 340)], fill=115, width=9)
    path = tmp_path / f"squared_closed_4_{spacing}.png"
    picture.save(path)
    return path
