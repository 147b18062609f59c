import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, features

from pasm.errors import ImageError
from pasm.images import encode_png, read_image


def noise(height, width, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def saved(image, path, **options):
    image.save(path, **options)
    return path


def png_header_only(width, height):
    """A PNG whose header claims ``width x height`` pixels but carries almost no data: a decompression bomb."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def assert_error(source, fragment, file_name, **kwargs):
    with pytest.raises(ImageError) as info:
        read_image(source, **kwargs)
    message = str(info.value)
    assert file_name in message
    assert fragment in message
    assert "\n" not in message


# Bad input: each one an ImageError naming the file.


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_error(path, "empty file", "empty.png")


def test_empty_bytes_use_the_given_name():
    assert_error(b"", "empty file", "upload.jpg", name="upload.jpg")


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not pixels\n" * 10)
    assert_error(path, "not an image", "notes.txt")


@pytest.mark.parametrize("format_", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, format_):
    buffer = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(buffer, format=format_)
    path = tmp_path / f"cut.{format_.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert_error(path, "truncated or corrupt image", path.name)


@pytest.mark.parametrize(
    "side, max_pixels",
    [(100_000, 40_000_000), (10_000, 200_000_000)],  # PIL's bomb error; PIL's bomb warning when ours allows it
)
def test_bomb_header_is_refused_without_decoding(tmp_path, side, max_pixels):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(side, side))
    assert_error(path, "too many pixels", "bomb.png", max_pixels=max_pixels)


def test_own_pixel_limit_checked_from_header(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(8000, 8000))  # 64 M pixels: under PIL's guard, over ours
    assert_error(path, "8000x8000", "big.png")
    small = saved(Image.fromarray(noise(20, 30)), tmp_path / "small.png")
    assert_error(small, "too many pixels", "small.png", max_pixels=599)
    assert read_image(small, max_pixels=600).shape == (20, 30, 3)


def test_pil_global_state_is_left_alone(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    with pytest.raises(ImageError):
        read_image(path)
    assert Image.MAX_IMAGE_PIXELS == limit
    assert warnings.filters == filters


def test_too_many_bytes(tmp_path):
    path = saved(Image.fromarray(noise(32, 32)), tmp_path / "heavy.png")
    assert_error(path, "file too large", "heavy.png", max_bytes=100)
    assert_error(path.read_bytes(), "file too large", "heavy.png", name="heavy.png", max_bytes=100)
    with open(path, "rb") as f:
        assert_error(f, "file too large", "heavy.png", max_bytes=100)


def test_missing_path(tmp_path):
    assert_error(tmp_path / "nowhere.jpg", "no such file", "nowhere.jpg")


def test_directory(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert_error(folder, "directory", "photos")


def test_unsupported_source_type():
    assert_error(12345, "cannot read an image from a int", "thing", name="thing")


# Every mode to HxWx3 uint8 RGB.


def test_rgb_from_path_bytes_and_file_object(tmp_path):
    pixels = noise(12, 20)
    path = saved(Image.fromarray(pixels), tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(path), pixels)
    np.testing.assert_array_equal(read_image(path.read_bytes()), pixels)
    with open(path, "rb") as f:
        f.read()  # an upload already read once elsewhere still reads whole
        result = read_image(f)
    np.testing.assert_array_equal(result, pixels)


def test_file_object_name_is_used_in_messages(tmp_path):
    path = tmp_path / "upload.png"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        assert_error(f, "empty file", "upload.png")


def test_grayscale(tmp_path):
    gray = noise(10, 14, 1)[:, :, 0]
    result = read_image(saved(Image.fromarray(gray, "L"), tmp_path / "gray.png"))
    assert result.shape == (10, 14, 3) and result.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(result[:, :, channel], gray)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 65535, 1000]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    result = read_image(saved(image, tmp_path / "deep.png"))
    assert result.shape == (2, 3, 3) and result.dtype == np.uint8
    np.testing.assert_array_equal(result[:, :, 0], [[0, 1, 128], [255, 255, 4]])


def test_thirty_two_bit_integer_mode(tmp_path):
    values = np.array([[0, 65535], [32896, 257]], dtype=np.int32)
    result = read_image(saved(Image.fromarray(values, "I"), tmp_path / "int.tif"))
    np.testing.assert_array_equal(result[:, :, 1], [[0, 255], [128, 1]])


def test_palette_with_transparency_becomes_white(tmp_path):
    image = Image.new("P", (4, 2))
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putdata([0, 1, 1, 1, 0, 0, 1, 1])
    image.info["transparency"] = 0
    result = read_image(saved(image, tmp_path / "palette.png", transparency=0))
    assert result.shape == (2, 4, 3)
    np.testing.assert_array_equal(result[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(result[0, 1], [200, 10, 10])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composited_over_white(tmp_path, mode):
    image = Image.new(mode, (3, 1))
    opaque, clear, half = ((40, 50, 60, 255), (40, 50, 60, 0), (0, 0, 0, 128)) if mode == "RGBA" else ((40, 255), (40, 0), (0, 128))
    image.putdata([opaque, clear, half])
    result = read_image(saved(image, tmp_path / f"alpha_{mode}.png"))
    assert result.shape == (1, 3, 3)
    np.testing.assert_array_equal(result[0, 0], [40, 50, 60] if mode == "RGBA" else [40, 40, 40])
    np.testing.assert_array_equal(result[0, 1], [255, 255, 255])
    assert np.all(np.abs(result[0, 2].astype(int) - 127) <= 1)


def test_cmyk(tmp_path):
    image = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # full magenta + yellow = red
    result = read_image(saved(image, tmp_path / "print.jpg", quality=95))
    assert result.shape == (4, 5, 3) and result.dtype == np.uint8
    red, green, blue = result[2, 2].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_webp(tmp_path):
    assert features.check("webp")
    pixels = np.zeros((8, 10, 3), dtype=np.uint8)
    pixels[:, :, 2] = 220
    result = read_image(saved(Image.fromarray(pixels), tmp_path / "photo.webp", lossless=True))
    np.testing.assert_array_equal(result, pixels)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = saved(Image.fromarray(pixels), tmp_path / "phone.jpg", exif=exif, quality=95)
    result = read_image(path)
    assert result.shape == (40, 20, 3)
    assert result[5, 10, 0] > 200 and result[5, 10, 1] < 50  # stored left is displayed top
    assert result[35, 10].min() < 30


def test_encode_png_round_trip():
    pixels = noise(6, 9)
    np.testing.assert_array_equal(read_image(encode_png(pixels)), pixels)
