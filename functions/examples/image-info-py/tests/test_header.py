"""The header reader on the repository's test photos and on broken input,
in CPython (`python3 -m unittest discover -s tests` from the project)."""

import json
import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

from header import HeaderError, describe, read_header  # noqa: E402

PHOTOS = pathlib.Path(__file__).resolve().parents[4] / "testdata" / "photos"


def photo(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


class EveryFormat(unittest.TestCase):
    def test_png(self):
        self.assertEqual(
            read_header(photo("basn6a16.png")),
            {"format": "png", "width": 32, "height": 32, "bit_depth": 16, "colour": "rgba", "channels": 4, "interlaced": False, "animated": False},
        )
        self.assertEqual(read_header(photo("bricks-dither.png"))["colour"], "indexed")

    def test_jpeg_baseline_progressive_and_cmyk(self):
        self.assertEqual(
            read_header(photo("harvesters.jpeg")),
            {"format": "jpeg", "width": 1165, "height": 859, "bit_depth": 8, "colour": "ycbcr", "channels": 3, "progressive": False, "exif_orientation": None},
        )
        self.assertTrue(read_header(photo("peacock.progressive.jpeg"))["progressive"])
        self.assertEqual(read_header(photo("Channel_digital_image_CMYK_color.jpg"))["colour"], "cmyk")

    def test_gif_bmp_webp_and_tiff(self):
        self.assertEqual(
            read_header(photo("hibiscus.regular.gif")),
            {"format": "gif", "version": "89a", "width": 312, "height": 442, "bit_depth": 8, "colour": "indexed", "global_palette": True},
        )
        self.assertEqual(
            read_header(photo("hibiscus.regular.bmp")),
            {"format": "bmp", "width": 312, "height": 442, "bits_per_pixel": 24, "compression": "none", "top_down": False},
        )
        self.assertEqual(
            read_header(photo("hibiscus.regular.lossy.webp")),
            {"format": "webp", "encoding": "lossy", "width": 312, "height": 442, "alpha": False, "animated": False},
        )
        tiff = read_header(photo("hibiscus.regular.tiff"))
        self.assertEqual((tiff["width"], tiff["height"], tiff["channels"]), (312, 442, 3))


class Parameters(unittest.TestCase):
    def test_fields_pick_and_order_the_answer(self):
        answer = describe(photo("kodim23.png"), [("fields", "height,width")])
        self.assertEqual(answer, b'{"height": 512, "width": 768}\n')

    def test_indent(self):
        self.assertEqual(json.loads(describe(photo("kodim23.png"), [("indent", "2")]))["width"], 768)
        self.assertIn(b'\n  "width": 768', describe(photo("kodim23.png"), [("indent", "2")]))


class Refusals(unittest.TestCase):
    def refuses(self, body: bytes, params, message: str):
        with self.assertRaises(HeaderError) as refused:
            describe(body, params)
        self.assertEqual(str(refused.exception), message)

    def test_not_an_image(self):
        self.refuses(b"hello", [], "not an image this function reads (PNG, JPEG, GIF, BMP, WebP or TIFF)")

    def test_cut_short(self):
        self.refuses(photo("kodim23.png")[:20], [], "truncated PNG IHDR chunk")
        self.refuses(b"\xff\xd8\xff\xe0\x00\x10JFIF", [], "truncated JPEG: no frame header before the data ends")

    def test_zero_size(self):
        png = bytearray(photo("basn6a16.png"))
        png[16:20] = b"\x00\x00\x00\x00"
        self.refuses(bytes(png), [], "the png header says 0x32 pixels")

    def test_impossible_bit_depth(self):
        png = bytearray(photo("basn6a16.png"))
        png[24] = 3
        self.refuses(bytes(png), [], "a PNG of colour type rgba cannot have bit depth 3")

    def test_bad_parameters(self):
        body = photo("basn6a16.png")
        self.refuses(body, [("colour", "red")], "unknown parameter `colour`; this function takes `fields` and `indent`")
        self.refuses(body, [("indent", "9")], "`indent` must be a whole number from 0 to 8, not `9`")
        self.refuses(body, [("fields", "width,exif_orientation")], "no field `exif_orientation` for a png image; it has format, width, height, bit_depth, colour, channels, interlaced, animated")


if __name__ == "__main__":
    unittest.main()
