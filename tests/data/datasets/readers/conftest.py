from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def write_image():
    """Writes a tiny image; Pillow picks the format (PNG, JPEG, BMP) from the suffix, whatever its case."""

    def write(path: Path, size: tuple[int, int] = (8, 6)) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 120, 40)).save(path)
        return path

    return write


@pytest.fixture
def write_text():
    def write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
