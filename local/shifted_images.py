"""Shifted copies of images, for showing that the drift report detects a real change in the inputs.

A darker or blurred camera is the kind of change drift monitoring exists for: the model's confidence
falls although nothing in the pipeline breaks.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter

SHIFTS = {
    "dark": lambda image: ImageEnhance.Brightness(image).enhance(0.3),  # an underexposed camera
    "blur": lambda image: image.filter(ImageFilter.GaussianBlur(1.5)),  # a dirty or out-of-focus lens
}


def write_shifted_copies(images: list[Path], root: Path, shift: str, out: Path) -> Path:
    """Each of ``images`` (below ``root``) shifted by ``shift``, as PNG at the same relative path below ``out``."""
    transform = SHIFTS[shift]
    for path in images:
        target = (out / path.relative_to(root)).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            transform(image.convert("RGB")).save(target, format="PNG")
    return out
