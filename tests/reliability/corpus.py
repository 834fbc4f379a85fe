"""The bad-input corpus, generated (no binaries in the repository): one writer per image case and the
behaviour biqa documents for it in docs/bad_input.md, either a conversion or an error naming the file."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (40, 48)  # width, height: larger than the tests' 32 px crops


@dataclass(frozen=True)
class ImageCase:
    name: str
    file: str
    write: Callable[[Path], None] | None
    """None: the file is listed but never written (missing)."""
    error: str | None = None
    """Part of the error that names the file; None when the image decodes."""
    check: Callable[[np.ndarray], None] | None = None
    """Asserts the decoded HxWx3 uint8 pixels are the documented conversion."""


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    """A PNG written by hand, for what Pillow will not write (16-bit RGB) or should never be asked to
    decode (a header announcing a gigapixel image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows))
            + chunk(b"IEND", b""))


def solid(mode: str, colour, size=SIZE) -> Image.Image:
    return Image.new(mode, size, colour)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


# -- writers ----------------------------------------------------------------------------------------------

def good(path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).save(path)


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def truncated_jpeg(path: Path) -> None:
    rng = np.random.default_rng(1)
    data = jpeg_bytes(Image.fromarray(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)))
    path.write_bytes(data[: len(data) // 2])


def text_with_image_suffix(path: Path) -> None:
    path.write_text("image,score\nthis is a CSV file saved with an image extension\n")


def gigapixel_header(path: Path) -> None:
    # Pillow refuses images above twice its MAX_IMAGE_PIXELS (decompression-bomb guard) when it opens them.
    path.write_bytes(png_bytes(20000, 20000, 8, 2, b""))


def grayscale(path: Path) -> None:
    solid("L", 90).save(path)


def bilevel(path: Path) -> None:
    image = solid("1", 0)
    image.paste(1, (0, 0, SIZE[0] // 2, SIZE[1]))
    image.save(path)


def cmyk_jpeg(path: Path) -> None:
    path.write_bytes(jpeg_bytes(solid("CMYK", (0, 255, 255, 0))))  # pure red ink-free cyan: red


def png_16bit_gray(path: Path) -> None:
    Image.fromarray(np.full((SIZE[1], SIZE[0]), 0x8080, dtype=np.uint16)).save(path)


def png_16bit_rgb(path: Path) -> None:
    pixel = struct.pack(">HHH", 0xFFFF, 0x8080, 0x0000)
    rows = b"".join(b"\x00" + pixel * SIZE[0] for _ in range(SIZE[1]))
    path.write_bytes(png_bytes(SIZE[0], SIZE[1], 16, 2, rows))


def rgba_png(path: Path) -> None:
    image = solid("RGBA", (255, 0, 0, 0))  # invisible red: what lies under transparency is arbitrary
    image.paste((0, 0, 255, 128), (0, 0, SIZE[0] // 2, SIZE[1]))  # half-transparent blue on the left
    image.save(path)


def palette_png(path: Path) -> None:
    solid("RGB", (30, 160, 60)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)


def palette_transparent_png(path: Path) -> None:
    image = solid("P", 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.paste(1, (0, 0, SIZE[0] // 2, SIZE[1]))
    image.save(path, transparency=0)  # palette entry 0 (black, the right half) is transparent


def jpeg_named_png(path: Path) -> None:
    path.write_bytes(jpeg_bytes(solid("RGB", (200, 200, 40))))


def exif_rotated_jpeg(path: Path) -> None:
    # Stored 48 wide x 24 high, a red block in its top-left corner; orientation 6 says "display rotated
    # 90 degrees clockwise", which puts that block top-right on a 24 x 48 picture.
    image = solid("RGB", (0, 0, 255), size=(48, 24))
    image.paste((255, 0, 0), (0, 0, 12, 12))
    exif = Image.Exif()
    exif[0x0112] = 6
    path.write_bytes(jpeg_bytes(image, exif=exif.tobytes()))


def small_image(path: Path) -> None:
    solid("RGB", (120, 80, 40), size=(16, 20)).save(path)


# -- documented behaviour ---------------------------------------------------------------------------------

def near(pixels: np.ndarray, colour, tolerance: int = 6) -> bool:
    return bool(np.all(np.abs(pixels.astype(int) - np.array(colour)) <= tolerance))


def rgb_of(colour) -> Callable[[np.ndarray], None]:
    def check(pixels: np.ndarray) -> None:
        assert near(pixels, colour), pixels.reshape(-1, 3)[:3]

    return check


def halves(left, right) -> Callable[[np.ndarray], None]:
    def check(pixels: np.ndarray) -> None:
        middle = pixels.shape[1] // 2
        assert near(pixels[:, : middle - 1], left), pixels[0, 0]
        assert near(pixels[:, middle + 1:], right), pixels[0, -1]

    return check


def shape(height: int, width: int) -> Callable[[np.ndarray], None]:
    def check(pixels: np.ndarray) -> None:
        assert pixels.shape == (height, width, 3)

    return check


def rotated_marker(pixels: np.ndarray) -> None:
    assert pixels.shape == (48, 24, 3)  # displayed upright: 24 wide, 48 high
    assert near(pixels[2:10, 14:22], (255, 0, 0), 40), pixels[5, 18]
    assert near(pixels[30:46, 2:22], (0, 0, 255), 40), pixels[40, 10]


IMAGE_CASES = [
    ImageCase("good RGB PNG", "good.png", good, check=shape(SIZE[1], SIZE[0])),
    ImageCase("zero-byte file", "zero_bytes.jpg", zero_bytes, error="cannot decode image (UnidentifiedImageError"),
    ImageCase("truncated JPEG", "truncated.jpg", truncated_jpeg, error="cannot decode image (OSError: image file is truncated"),
    ImageCase("text file with an image extension", "not_an_image.png", text_with_image_suffix,
              error="cannot decode image (UnidentifiedImageError"),
    ImageCase("missing file", "missing.png", None, error="file not found"),
    ImageCase("decompression bomb (20000x20000 header)", "gigapixel.png", gigapixel_header,
              error="cannot decode image (DecompressionBombError"),
    ImageCase("grayscale PNG", "grayscale.png", grayscale, check=rgb_of((90, 90, 90))),
    ImageCase("1-bit PNG", "bilevel.png", bilevel, check=halves((255, 255, 255), (0, 0, 0))),
    ImageCase("CMYK JPEG", "cmyk.jpg", cmyk_jpeg, check=rgb_of((255, 0, 0))),
    ImageCase("16-bit grayscale PNG", "gray16.png", png_16bit_gray, check=rgb_of((128, 128, 128), )),
    ImageCase("16-bit RGB PNG", "rgb16.png", png_16bit_rgb, check=rgb_of((255, 128, 0))),
    ImageCase("RGBA PNG", "rgba.png", rgba_png, check=halves((127, 127, 255), (255, 255, 255))),
    ImageCase("palette PNG", "palette.png", palette_png, check=rgb_of((30, 160, 60))),
    ImageCase("palette PNG with a transparent entry", "palette_transparent.png", palette_transparent_png,
              check=halves((200, 30, 30), (255, 255, 255))),
    ImageCase("JPEG data under a .png name", "jpeg_inside.png", jpeg_named_png, check=rgb_of((200, 200, 40))),
    ImageCase("EXIF-rotated JPEG (orientation 6)", "rotated.jpg", exif_rotated_jpeg, check=rotated_marker),
    ImageCase("image smaller than the crop (16x20, crop 32)", "small.png", small_image, check=shape(20, 16)),
]


def write_corpus(folder: Path, cases: list[ImageCase] = IMAGE_CASES) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        paths[case.name] = folder / case.file
        if case.write is not None:
            case.write(folder / case.file)
    return paths
