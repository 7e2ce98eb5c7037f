"""A photo, scan or drawing of one digit, made into an MNIST-style 28x28 input the way a person would find the digit.

1. Read, safely: only PNG, JPEG, GIF, BMP, TIFF and WebP are opened (Pillow's `formats=`; EPS,
   for one, would run Ghostscript), and the pixel count is checked from the header before any
   pixel is decoded (a 90 KB PNG can declare 400 megapixels); a large JPEG is decoded at a
   reduced scale (Pillow's `draft`). Then the first frame of a multi-frame file, turned by its
   EXIF orientation; palette, CMYK, 16-bit and alpha images all converted. A truncated or
   unreadable file is one clear error.
2. Ink: transparency first (a canvas export's strokes are its alpha when they are one colour;
   otherwise it is composited onto white). Then uneven light is removed: the paper's brightness is
   estimated by a morphological closing (scikit-image), which erases strokes thinner than its square
   and keeps gradients and shadows, and the ink is how much darker than that paper a pixel is.
   Ruled or squared paper's lines, three or more straight lines across most of the picture, are
   removed from the ink (`ruled_lines_removed`). Both ways round are read (dark ink on light
   paper, light ink on dark); see `mnist_style`.
3. The digit: Otsu's threshold of the ink (scikit-image) and its connected components; components
   touching the frame (a paper edge, a grey margin, the table) and specks are dropped, and what
   lies near the largest remaining component is kept.
4. MNIST's own steps: the digit's box fitted into 20x20 keeping its aspect ratio, then placed in
   28x28 with its centre of mass at the centre, scaled to [0, 1].

Why scikit-image: its morphology, thresholds and labelling are maintained, documented and fast
on NumPy arrays, with no native GUI or video stack to install (OpenCV's headless wheel is 50 MB
and its Python API is not NumPy-typed).
"""

import dataclasses
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np

from stages.errors import DataError

CANVAS = 28
DIGIT_BOX = 20
# Images are reduced to this before the digit is looked for: the result is 20x20 pixels anyway.
WORKING_SIDE = 400
# Below this, no ink stands out from the paper (on a 0-1 scale).
MINIMUM_CONTRAST = 0.08
# Ink covering more of its box than this is a solid shape (a sheet of paper, even with a bold digit cut out of it:
# 0.79 to 0.84 measured), not a digit's strokes (bold printed digits: 0.63 to 0.65).
SOLID_FILL = 0.75
BLANK = "blank image: no digit-like ink stands out from the background"
# The formats Pillow may open: the ones cameras, scanners, canvases and browsers write. Anything else
# (EPS runs Ghostscript, PSD, ICO, ...) is refused before it is parsed further.
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
ACCEPTED_TEXT = "PNG, JPEG, GIF, BMP, TIFF or WebP"
# The most pixels decoded from one image: a 48-megapixel phone photo (8,064 x 6,048) passes, and nothing
# larger is decoded (8-bit RGBA at this size is 256 MB). JPEGs are decoded at 1/2 to 1/8 scale anyway.
MAX_PIXELS = 64_000_000
# Ruled or squared paper's lines run across at least this share of the picture's width or height.
RULE_SPAN = 0.8
# Fewer parallel rules than this are a digit's strokes (a 1, a 7's bar), not ruled or squared paper.
MINIMUM_RULES = 3


class ImageTooLargeError(DataError):
    """An image declares more pixels than MAX_PIXELS (its header is read, its pixels never decoded)."""


def open_image(source: Path | BinaryIO, name: str | None = None):
    """The image in `source` (a path, or an open binary file such as an upload's bytes): its first frame,
    upright by its EXIF orientation, fully read. Messages name it `name` (default: the path).

    Only ACCEPTED_FORMATS are opened, and no image of more than MAX_PIXELS is decoded: its size comes
    from the header. A JPEG is decoded at the smallest of Pillow's draft scales that keeps it at least
    WORKING_SIDE wide, since it is reduced to that anyway.

    Raises:
        ImageTooLargeError: more than MAX_PIXELS pixels.
        DataError: not an image in an accepted format, truncated, or unreadable; names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = name or str(source)
    try:
        # Pillow's own bomb check runs inside `open`: it warns, or raises above twice its limit. Both become
        # the one-line refusal below instead of a warning on stderr or a traceback.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=ACCEPTED_FORMATS)
        check_pixel_budget(image.size, name)
        image.seek(0)  # a GIF, TIFF or APNG: the first frame
        if image.format == "JPEG":
            image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))
        image.load()  # a truncated file fails here, not later
        return ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file; expected an image of a digit") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageTooLargeError(too_large_message(name, _declared_pixels(error))) from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image in an accepted format; expected {ACCEPTED_TEXT}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{name}: truncated or unreadable image ({error}); expected a complete image file") from None


def _declared_pixels(error: Exception) -> int | None:
    """The pixel count Pillow's bomb message states ('Image size (400000000 pixels) exceeds ...')."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(error))
    return int(found.group(1)) if found else None


def too_large_message(name: str, pixels: int | None, size: tuple[int, int] | None = None) -> str:
    """The refusal of an image over MAX_PIXELS: its width and height when known, else its pixel count."""
    if size is not None:
        described = f"{size[0]:,} x {size[1]:,} pixels ({size[0] * size[1] / 1e6:,.1f} megapixels)"
    elif pixels is not None:
        described = f"{pixels / 1e6:,.1f} megapixels"
    else:
        described = "more pixels than Pillow's own limit"
    return f"{name}: {described}: expected at most {MAX_PIXELS / 1e6:g} megapixels (a photo of the digit)"


def check_pixel_budget(size: tuple[int, int], name: str) -> None:
    """Raises ImageTooLargeError when an image of `size` (width, height) has more than MAX_PIXELS pixels."""
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageTooLargeError(too_large_message(name, size[0] * size[1], size))


def gray_or_alpha(image) -> tuple[np.ndarray, bool]:
    """The image at most WORKING_SIDE wide as float32 brightness in [0, 1], or its alpha when that is the ink.

    Returns:
        (array, True) when the array is already ink (strokes of one colour on transparency),
        else (brightness, False).
    """
    from PIL import Image

    image = image.copy()
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        alpha, colour = rgba[..., 3], rgba[..., :3]
        if alpha.min() < 0.98:
            opaque = alpha > 0.5
            if not opaque.any():
                raise DataError(BLANK)
            if colour.mean(axis=2)[opaque].std() < 0.08:
                return alpha, True  # strokes of one colour on transparency: the alpha is the ink
            colour = colour * alpha[..., None] + (1 - alpha[..., None])  # onto white paper
        return np.clip(colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32), 0, 1), False
    scale = 65535 if image.mode.startswith("I") else 255
    return np.clip(np.asarray(image.convert("F"), dtype=np.float32) / scale, 0, 1), False


def paper_removed(gray: np.ndarray) -> np.ndarray:
    """Dark ink on lighter paper: how much darker than the paper each pixel is, the paper estimated by a
    closing whose square is wider than any stroke (it erases the strokes and keeps gradients and shadows).

    A square rather than a disk: the paper's light varies slowly, so the footprint's shape barely shows,
    and a square is separable into two 1-D passes, 16 times faster than a disk of the same radius
    (benchmarks/page_load.py)."""
    from skimage import morphology

    # A digit filling the picture has strokes up to about a fifth of its height.
    side = 2 * max(2, round(max(gray.shape) / 6)) + 1
    paper = morphology.closing(gray, morphology.footprint_rectangle((side, side), decomposition="separable"))
    return np.clip(paper - gray, 0, 1)


def _rule_count(ruled: np.ndarray) -> int:
    """How many separate runs of True a 1-D mask has (adjacent ruled rows are one rule)."""
    return int(np.count_nonzero(np.diff(ruled.astype(np.int8)) == 1) + ruled[0])


def ruled_lines_removed(ink: np.ndarray) -> tuple[np.ndarray, bool]:
    """The ink without ruled or squared paper's lines: straight rows or columns of ink across at least
    RULE_SPAN of the picture, when there are MINIMUM_RULES or more of them in one direction; and whether
    there were (then this way round, the paper's lines are ink, as the writing on it is).

    Each direction's lines are a grey-scale opening with a line as long as RULE_SPAN of the picture (a
    running minimum then maximum, scipy.ndimage's O(n) filters): only ink that runs unbroken that far
    survives it, which a digit's strokes do not, and a grid's lines do whatever their spacing. Fewer than
    MINIMUM_RULES such lines are left alone: a tightly cropped 1 or a 7's bar can span the picture too.
    """
    from scipy import ndimage

    cleaned, ruled_paper = ink, False
    strong = ink > MINIMUM_CONTRAST / 2
    for axis in (0, 1):  # 1: horizontal rules run along each row; 0: vertical ones down each column
        # A rule needs ink along RULE_SPAN of its row at least: where too few rows have that much, no filter runs
        # (4 ms saved on a 280x280 drawing, the page's usual upload; benchmarks/page_budget.py).
        covered = strong.mean(axis=axis) >= RULE_SPAN
        if _rule_count(covered) < MINIMUM_RULES:
            continue
        length = max(3, round(RULE_SPAN * ink.shape[axis]))
        lines = ndimage.maximum_filter1d(ndimage.minimum_filter1d(ink, length, axis=axis), length, axis=axis)
        ruled = lines.max(axis=axis) > MINIMUM_CONTRAST / 2  # the rows (or columns) a rule runs along
        if _rule_count(ruled) >= MINIMUM_RULES:
            cleaned, ruled_paper = np.clip(cleaned - lines, 0, 1), True
    return cleaned, ruled_paper


def dark_ink(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper: in the middle of the picture, where the digit is, most
    pixels are paper, and the ink lies far from their median on one side. The whole picture's median
    would not do: a sheet on a darker table is mostly table."""
    height, width = gray.shape
    middle = gray[height // 4 : height - height // 4, width // 4 : width - width // 4]
    paper = float(np.median(middle))
    darkest, brightest = np.percentile(middle, [2, 98])
    return paper - darkest >= brightest - paper


@dataclasses.dataclass
class Reading:
    """One way to read a picture (dark ink on light paper, or the other way round): the digit it finds."""

    ink: np.ndarray
    box: tuple[int, int, int, int]  # top, left, bottom, right of the kept ink
    clear_of_frame: bool
    fill: float  # the share of its box the ink covers: strokes leave most of it empty, a sheet of paper does not

    @property
    def strokes(self) -> bool:
        return self.fill < SOLID_FILL

    def encloses(self, other: "Reading", slack: int = 2) -> bool:
        top, left, bottom, right = self.box
        other_top, other_left, other_bottom, other_right = other.box
        return (top - slack <= other_top and left - slack <= other_left
                and other_bottom <= bottom + slack and other_right <= right + slack)  # fmt: skip


def digit_only(ink_map: np.ndarray) -> Reading | None:
    """The ink of the digit alone: components touching the frame (a paper edge, a margin, the table) and
    specks dropped, and what lies near the largest remaining component kept. None if no ink stands out."""
    from skimage import filters, measure, morphology

    if ink_map.max() < MINIMUM_CONTRAST:
        return None
    mask = ink_map > max(filters.threshold_otsu(ink_map), MINIMUM_CONTRAST / 2)
    labels = measure.label(mask, connectivity=2)
    regions = measure.regionprops(labels)
    height, width = mask.shape
    inside = [region for region in regions if not touches_frame(region.bbox, height, width)]
    candidates = inside or regions  # a digit drawn to the edge of its canvas touches the frame
    largest = max(candidates, key=lambda region: region.area)
    top, left, bottom, right = largest.bbox
    reach = max(bottom - top, right - left)
    kept = [
        region.label
        for region in candidates
        if region.area >= 0.08 * largest.area
        and abs(region.centroid[0] - largest.centroid[0]) < reach
        and abs(region.centroid[1] - largest.centroid[1]) < reach
    ]
    # The strokes' soft edges lie just outside the threshold: keep a margin of two pixels.
    keep = morphology.dilation(np.isin(labels, kept), morphology.disk(2))
    rows, columns = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    box = (int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1)
    fill = float(keep.sum()) / ((box[2] - box[0]) * (box[3] - box[1]))
    return Reading(np.where(keep, ink_map, 0).astype(np.float32), box, bool(inside), fill)


def touches_frame(bbox: tuple[int, int, int, int], height: int, width: int) -> bool:
    top, left, bottom, right = bbox
    return top == 0 or left == 0 or bottom == height or right == width


def mnist_layout(digit: np.ndarray) -> np.ndarray:
    """MNIST's steps: the digit's box fitted into 20x20, centred by mass in 28x28, scaled to [0, 1]."""
    from PIL import Image

    rows = np.flatnonzero(digit.max(axis=1) > 0.1 * digit.max())
    columns = np.flatnonzero(digit.max(axis=0) > 0.1 * digit.max())
    digit = digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    scale = DIGIT_BOX / max(digit.shape)
    height, width = max(1, round(digit.shape[0] * scale)), max(1, round(digit.shape[1] * scale))
    resized = np.asarray(Image.fromarray(digit).resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)
    resized = np.clip(resized, 0, None)
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    total = resized.sum()
    centre_row = (resized.sum(axis=1) * np.arange(height)).sum() / total
    centre_column = (resized.sum(axis=0) * np.arange(width)).sum() / total
    top = int(np.clip(round(CANVAS / 2 - 0.5 - centre_row), 0, CANVAS - height))
    left = int(np.clip(round(CANVAS / 2 - 0.5 - centre_column), 0, CANVAS - width))
    canvas[top : top + height, left : left + width] = resized
    return canvas / canvas.max()


def mnist_style(image) -> np.ndarray:
    """A PIL image of one digit as float32 (28, 28) in [0, 1]: a light digit on black, centred by mass.

    Dark ink on light paper and light ink on dark are both read. Read the wrong way round, a picture
    gives the paper enclosed by the strokes (the inside of a 0, the pockets of a 2), which lies within
    the strokes' box: so the reading whose digit encloses the other's is the right one, unless what
    encloses is solid (a sheet of paper on a darker table, read the wrong way round). Otherwise a
    digit clear of the frame wins, then the middle of the picture decides. On ruled or squared paper,
    the lines decide first: the reading in which they are ink is the right one.

    Raises:
        DataError: no digit-like ink stands out.
    """
    values, is_ink = gray_or_alpha(image)
    if is_ink:
        readings = [digit_only(values)]
    else:
        dark_map, dark_rules = ruled_lines_removed(paper_removed(values))
        light_map, light_rules = ruled_lines_removed(paper_removed(1 - values))
        dark, light = digit_only(dark_map), digit_only(light_map)
        if dark_rules != light_rules and (dark if dark_rules else light):
            # Ruled or squared paper: its lines are printed the way the writing on it is, darker than the paper
            # (or lighter, on a board). Read the other way round, its squares would be the ink.
            readings = [dark if dark_rules else light]
        elif dark and light and dark.clear_of_frame == light.clear_of_frame:
            if dark.encloses(light) and dark.strokes and not light.encloses(dark):
                readings = [dark]
            elif light.encloses(dark) and light.strokes and not dark.encloses(light):
                readings = [light]
            else:
                readings = [dark if dark_ink(values) else light]
        else:
            readings = sorted(filter(None, (dark, light)), key=lambda reading: not reading.clear_of_frame)
    if not readings or readings[0] is None:
        raise DataError(BLANK)
    return mnist_layout(readings[0].ink)


def load(source: Path | BinaryIO, name: str | None = None) -> np.ndarray:
    """`mnist_style` of the image in `source` (a path or an open binary file); every failure is one
    DataError naming it `name` (default: the path)."""
    name = name or str(source)
    try:
        return mnist_style(open_image(source, name))
    except DataError as error:
        message = str(error)
        raise type(error)(message if message.startswith(name) else f"{name}: {message}") from None


def side_by_side_png(original, model_input: np.ndarray, height: int = 280) -> bytes:
    """The original image and the 28x28 input the model saw, enlarged to the same height, as PNG bytes."""
    from PIL import Image

    shown = original.convert("RGB")
    shown = shown.resize((max(1, round(shown.width * height / shown.height)), height), Image.Resampling.LANCZOS)
    seen = Image.fromarray((model_input * 255).astype(np.uint8)).resize((height, height), Image.Resampling.NEAREST)
    page = Image.new("RGB", (shown.width + 20 + height, height), "white")
    page.paste(shown, (0, 0))
    page.paste(seen.convert("RGB"), (shown.width + 20, 0))
    return encoded(page)


def encoded(image, image_format: str = "PNG") -> bytes:
    """A PIL image as the bytes of an image file (PNG by default)."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()
