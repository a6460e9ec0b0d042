"""Image folders: every image below a path, converted to RGB when needed, centre-cropped and resized once."""
from __future__ import annotations

import struct
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from gan.errors import GanError
from gan.data.common import console_print as _console_print, why as _why

# ---- image folders -----------------------------------------------------------------------------------------
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
# Modes converted to RGB, and how the console line names them.
CONVERTED = {"L": "grayscale", "1": "1-bit", "P": "palette", "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab",
             "HSV": "HSV", "RGBX": "RGBX", "RGBA": "RGBA", "LA": "grayscale+alpha", "PA": "palette+alpha",
             "RGBa": "RGBA", "La": "grayscale+alpha", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit",
             "I;16N": "16-bit", "I": "16-bit"}


def _to_rgb(im):
    """A PIL image of any supported mode as 8-bit RGB; transparency composited on white."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode.startswith("I"):  # 16-bit grayscale: scale, PIL's convert("L") would clip at 255
        a = np.asarray(im).astype(np.float64) * (255.0 / 65535.0)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode not in CONVERTED:
        raise ValueError(f"image mode {im.mode} is not supported (expected RGB, grayscale, palette or 16-bit)")
    if "A" in im.mode or "a" in im.mode or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _image_files(root: Path) -> list[Path]:
    def hidden(f: Path) -> bool:
        return any(part.startswith(".") for part in f.relative_to(root).parts)

    return sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file() and not hidden(f))


def load_folder(path: str, size: int, log=None) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Every image below `path` (class subfolders or flat), centre-cropped to a square and resized once.

    Returns images uint8 (N, size, size, 3), labels int64 (N,) and the sorted class names, or None and None
    for a flat folder. Non-RGB images are converted (one line through `log` counts them per mode)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise GanError(f"data.path: '{path}' is not a folder of images")
    files = _image_files(root)
    if not files:
        raise GanError(f"data.path: no images ({', '.join(sorted(IMAGE_EXTS))}) under '{path}'")
    rel = [f.relative_to(root).parts for f in files]
    labels = classes = None
    if all(len(p) > 1 for p in rel):  # every image in a class subfolder
        classes = sorted({p[0] for p in rel})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[p[0]] for p in rel], np.int64)
    out = np.empty((len(files), size, size, 3), np.uint8)
    modes = Counter()
    for i, f in enumerate(files):  # load time only; the training loop never touches PIL
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL warns on harmless oddities (EXIF); damage raises below
                with Image.open(f) as im:
                    im.load()
                    if im.mode != "RGB":
                        modes[im.mode] += 1
                    rgb = _to_rgb(im)
                    s = min(rgb.size)
                    left, top = (rgb.width - s) // 2, (rgb.height - s) // 2
                    rgb = rgb.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
                    out[i] = np.asarray(rgb)
        except UnidentifiedImageError:
            raise GanError(f"data.path: cannot read image '{f}' (not an image PIL knows: damaged, or another "
                           f"kind of file with an image extension)") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                Image.DecompressionBombError) as e:  # what PIL raises on damaged or unsupported files
            raise GanError(f"data.path: cannot read image '{f}' ({_why(e)})") from None
    if modes:
        said = ", ".join(f"{n} {CONVERTED.get(m, m)} ({m})" for m, n in sorted(modes.items()))
        (log or _console_print)(f"data: converted {sum(modes.values())} of {len(files)} images to RGB: {said}")
    return out, labels, classes
