import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, features

from pasm.errors import ImageError
from pasm.images import IMAGE_FORMATS, WORK_PIXELS, encode_png, read_image


def noise(height, width, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def saved(image, path, **options):
    image.save(path, **options)
    return path


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width, height):
    """A PNG whose header claims ``width x height`` pixels but carries almost no data: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def black_one_bit_png(width, height):
    """A complete, valid 1-bit black PNG built row by row: 24000x24000 is ~70 kB, and no image is ever allocated."""
    row = b"\x00" * (1 + -(-width // 8))  # filter byte, then 8 pixels a byte
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


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
    path.write_bytes(png_header_only(9500, 9500))  # 90 M pixels: a PNG is decoded whole, so over our limit
    assert_error(path, "9500x9500", "big.png")
    small = saved(Image.fromarray(noise(20, 30)), tmp_path / "small.png")
    assert_error(small, "too many pixels", "small.png", max_pixels=599)
    assert read_image(small, max_pixels=600).shape == (20, 30, 3)


def test_a_real_576_megapixel_png_is_refused_in_our_words(tmp_path):
    np.testing.assert_array_equal(read_image(black_one_bit_png(40, 30)), np.zeros((30, 40, 3)))  # the builder is sound
    data = black_one_bit_png(24000, 24000)
    assert len(data) < 2**20
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert str(info.value) == ("%s: too many pixels (over %d, refused as a possible decompression bomb)"
                               % (path, 2 * Image.MAX_IMAGE_PIXELS))


def phone_jpeg(width, height, **options):
    """A mostly flat grey JPEG with a dark block at a known place, as cheap to make as a photo of that size can be."""
    image = Image.new("L", (width, height), 200)
    image.paste(20, (width // 4, height // 4, width // 2, height // 2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=20, **options)
    return buffer.getvalue()


def test_a_45_megapixel_phone_jpeg_is_decoded_at_reduced_scale(monkeypatch):
    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: drafts.append(size) or real_draft(self, mode, size))
    result = read_image(phone_jpeg(6000, 7500), name="phone.jpg")
    assert drafts == [(3000, 3750)], "libjpeg decodes at half scale: the full 45 Mpx never exist"
    assert result.shape == (3750, 3000, 3) and result.shape[0] * result.shape[1] <= WORK_PIXELS
    assert result[1000, 800].max() < 60 and result[2500, 2000].min() > 150  # the block, at half scale


def test_a_jpeg_may_have_more_pixels_than_a_png_because_it_is_decoded_reduced(tmp_path):
    jpeg = phone_jpeg(600, 500)  # 300 000 pixels, against limits scaled down 1000x
    assert read_image(jpeg, max_pixels=200_000, work_pixels=100_000).shape == (250, 300, 3)
    assert_error(jpeg, "too many pixels", "big.jpg", name="big.jpg", max_pixels=140_000)  # over twice the limit
    png = saved(Image.open(io.BytesIO(jpeg)), tmp_path / "big.png")
    assert_error(png, "600x500", "big.png", max_pixels=200_000)


def test_images_over_the_working_size_come_back_reduced_by_a_whole_factor(tmp_path):
    pixels = noise(60, 90)
    path = saved(Image.fromarray(pixels), tmp_path / "wide.png")
    reduced = read_image(path, work_pixels=1500)
    assert reduced.shape == (30, 45, 3)
    np.testing.assert_array_equal(reduced, np.asarray(Image.fromarray(pixels).reduce(2)))
    assert read_image(path, work_pixels=5400).shape == (60, 90, 3)


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


# The formats read: one list (IMAGE_FORMATS), which the app's uploaders take too.


@pytest.mark.parametrize("format_", sorted(set(IMAGE_FORMATS) - {"MPO"}))
def test_every_listed_format_is_read(tmp_path, format_):
    pixels = np.zeros((6, 9, 3), dtype=np.uint8)
    pixels[:, 4:] = 255
    image = Image.fromarray(pixels).convert("L" if format_ == "PPM" else "RGB")
    path = saved(image, tmp_path / f"photo.{IMAGE_FORMATS[format_][0]}", format=format_)
    result = read_image(path)
    assert result.shape == (6, 9, 3)
    assert result[:, :3].max() < 40 and result[:, 5:].min() > 215


def test_an_animated_gif_is_read_as_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (5, 4), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = read_image(path)
    assert result.shape == (4, 5, 3) and result[0, 0, 0] > 200 and result[0, 0, 2] < 50


def test_a_format_outside_the_list_is_refused_in_one_line(tmp_path):
    path = saved(Image.new("RGB", (16, 16)), tmp_path / "app.ico", format="ICO")
    assert_error(path, "ICO images are not read here", "app.ico")
    assert_error(path, "gif", "app.ico")

