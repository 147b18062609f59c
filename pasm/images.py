"""Turn whatever a user hands us (a path, bytes, an upload) into one kind of array: HxWx3 uint8 RGB.

Photos arrive rotated by EXIF, as 16-bit scans, palettes with transparency, CMYK prints, truncated
downloads or files that are not images at all. Every one of those either becomes a plain RGB array
or an ``ImageError`` that names the file and says in one line what is wrong with it.

Size. Phones take 48-200 Mpx photos, but the face pipeline never needs more than a few Mpx, so a
photo over ``WORK_PIXELS`` comes back reduced by a whole factor: a JPEG is decoded at 1/2, 1/4 or
1/8 scale (libjpeg's DCT scaling, ``Image.draft``), so its full-size pixels never exist in memory;
other formats are decoded and then reduced. Everything reported in photo coordinates (face boxes,
attack points) is then in the pixels of the returned array, not of the file.
"""
import io
import os
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from pasm.errors import ImageError, first_line

# Pillow's default warning threshold (Image.MAX_IMAGE_PIXELS, 89.5 Mpx), fixed here so that another
# library changing Pillow's global does not change what we accept. A file decoded at full size may
# have this many pixels (a 4-byte-per-pixel decode stays under about 360 MB).
MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
# A JPEG is decoded at reduced scale, so it may have twice as many: Pillow's own error threshold
# (179 Mpx), which takes 48-108 Mpx phone photos; larger ones usually exceed MAX_BYTES anyway.
JPEG_PIXEL_FACTOR = 2
# The largest array handed back, about a 4000x3000 photo: a phone's usual output passes unchanged,
# and a face filling a tenth of the width still spans ~400 px, more than any model input (<= 224 px)
# or the 256 px face-region map needs; 36 MB of RGB, so the app's cache of decoded photos stays small.
WORK_PIXELS = 12_000_000
MAX_BYTES = 25 * 2**20
_JPEG_SCALES = (1, 2, 4, 8)
# The image formats pasm reads (Pillow's names; MPO is a phone's multi-picture JPEG), each with the file name endings it
# goes by. The one list: the app's uploaders accept exactly IMAGE_SUFFIXES, and read_image refuses any other format
# (an icon, a Photoshop file) in words, so what the app takes and what the CLI reads cannot drift apart.
IMAGE_FORMATS = {"JPEG": ("jpg", "jpeg"), "MPO": ("jpg", "jpeg"), "PNG": ("png",), "WEBP": ("webp",), "GIF": ("gif",),
                 "BMP": ("bmp",), "TIFF": ("tif", "tiff"), "PPM": ("ppm", "pgm", "pbm")}
IMAGE_SUFFIXES = tuple(dict.fromkeys(suffix for suffixes in IMAGE_FORMATS.values() for suffix in suffixes))

# Decoders report damaged data with many exception types; all of them mean "corrupt file".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def read_image(source, name=None, max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES, work_pixels=WORK_PIXELS):
    """Decode ``source`` (path, bytes or binary file object) to an HxWx3 uint8 RGB array, upright.

    An image over ``work_pixels`` comes back reduced by a whole factor to at most that many pixels
    (see the module docstring); a JPEG may have up to ``JPEG_PIXEL_FACTOR * max_pixels`` pixels.
    """
    name = _display_name(source, name)
    data = _read_bytes(source, name, max_bytes)
    if not data:
        raise ImageError(name, "empty file")
    image = _open_checked(data, name, max_pixels, work_pixels)
    return _reduce(_to_rgb_array(image, name), work_pixels)


def encode_png(array):
    """PNG bytes of an HxW or HxWxC uint8 array, for downloads and st.image without temp files."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _display_name(source, name):
    if name is not None:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", None) or "image")


def _read_bytes(source, name, max_bytes):
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, name, max_bytes)
    elif hasattr(source, "read"):
        data = _read_file_object(source, max_bytes)
    else:
        raise ImageError(name, f"cannot read an image from a {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageError(name, f"file too large ({_megabytes(len(data))} read, limit {_megabytes(max_bytes)})")
    return data


def _read_path(path, name, max_bytes):
    if os.path.isdir(path):
        raise ImageError(name, "is a directory, not an image file")
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ImageError(name, f"file too large ({_megabytes(size)}, limit {_megabytes(max_bytes)})")
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError(name, "no such file") from None
    except OSError as e:
        raise ImageError(name, f"cannot read file ({e.strerror or e})") from None


def _read_file_object(f, max_bytes):
    """Read from the start: an upload that was already read once (e.g. by a preview) is not empty."""
    if getattr(f, "seekable", lambda: False)():
        f.seek(0)
    return f.read(max_bytes + 1)


def _megabytes(n):
    return f"{n / 2**20:.1f} MiB"


def _open_checked(data, name, max_pixels, work_pixels):
    """Open, check the header's pixel count, then decode: a bomb is refused before it is decompressed.

    PIL's own guard (``Image.MAX_IMAGE_PIXELS``) stays as it is and holds too: its error is a refusal
    in our words, its warning threshold caps what is decoded at full size (``_pixel_limit``), and
    PIL's global state is untouched.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _pixel_limit applies it, naming the size
        try:
            image = Image.open(io.BytesIO(data))
            _check_format(image, name)
            _check_pixels(image.size, name, _pixel_limit(image, max_pixels))
            _draft(image, work_pixels)
            image.load()
            return ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise ImageError(name, f"too many pixels (over {2 * Image.MAX_IMAGE_PIXELS}, "
                                   "refused as a possible decompression bomb)") from None
        except UnidentifiedImageError:
            raise ImageError(name, "not an image (PIL cannot identify it)") from None
        except _DECODE_ERRORS as e:
            raise ImageError(name, f"truncated or corrupt image ({first_line(e)})") from None


def _pixel_limit(image, max_pixels):
    """A JPEG is decoded at reduced scale, so it may have ``JPEG_PIXEL_FACTOR`` times more pixels;
    anything else is decoded whole, so it also stays under PIL's warning threshold."""
    if _is_jpeg(image):
        return max_pixels * JPEG_PIXEL_FACTOR
    pil_limit = Image.MAX_IMAGE_PIXELS
    return max_pixels if pil_limit is None else min(max_pixels, pil_limit)


def _is_jpeg(image):
    return isinstance(image, JpegImagePlugin.JpegImageFile)  # MPO, phones' multi-picture JPEG, included


def _check_format(image, name):
    if image.format not in IMAGE_FORMATS:
        raise ImageError(name, f"{image.format} images are not read here (formats read: {', '.join(IMAGE_SUFFIXES)})")


def _check_pixels(size, name, max_pixels):
    width, height = size
    if width * height > max_pixels:
        raise ImageError(name, f"too many pixels ({width}x{height} = {width * height}, limit {max_pixels})")
    if width == 0 or height == 0:
        raise ImageError(name, f"image has no pixels ({width}x{height})")


def _draft(image, work_pixels):
    """Have libjpeg decode a large JPEG at the least reduction (1/2, 1/4, 1/8) that fits ``work_pixels``."""
    if not _is_jpeg(image):
        return
    width, height = image.size
    scale = next((s for s in _JPEG_SCALES if -(-width // s) * -(-height // s) <= work_pixels), _JPEG_SCALES[-1])
    if scale > 1:
        image.draft("RGB", (width // scale, height // scale))


def _reduce(array, work_pixels):
    """Shrink by the least whole factor that fits ``work_pixels`` (box filter): what the JPEG draft did not."""
    height, width = array.shape[:2]
    factor = 1
    while -(-width // factor) * -(-height // factor) > work_pixels:
        factor += 1
    if factor == 1:
        return array
    return np.asarray(Image.fromarray(array).reduce(factor), dtype=np.uint8)


def _to_rgb_array(image, name):
    """Every PIL mode to RGB uint8: high bit depths rescaled, transparency composited over white."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        gray = _high_depth_to_uint8(np.asarray(image), image.mode)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _composite_over_white(image.convert("RGBA"))
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ValueError as e:
        raise ImageError(name, f"unsupported colour mode {image.mode} ({first_line(e)})") from None


def _high_depth_to_uint8(values, mode):
    """Scale 16-bit data by its full range (65535 -> 255); anything else by its own min..max."""
    values = values.astype(np.float64)
    if mode != "F" and values.min() >= 0 and values.max() <= 65535:
        return np.round(values / 257.0).astype(np.uint8)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _composite_over_white(rgba):
    pixels = np.asarray(rgba, dtype=np.float32)
    alpha = pixels[:, :, 3:] / 255.0
    rgb = pixels[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8)
