"""The function's work, apart from the component's export so the tests run
it in CPython: reads the header of a PNG, JPEG, GIF, BMP, WebP or TIFF
image, without decoding its pixels, and answers what it says as JSON.
Only the standard library: it runs the same in the sandbox."""

import json
import struct

FORMATS = "PNG, JPEG, GIF, BMP, WebP or TIFF"


class HeaderError(ValueError):
    """The input is not an image this function reads, or its header is
    cut short or inconsistent: the caller's problem (`invalid-input`)."""


def describe(body: bytes, params: list[tuple[str, str]]) -> bytes:
    """The JSON answer: every fact of the header, or only the `fields`
    asked for (comma-separated), indented by `indent` spaces (0 to 8)."""
    fields, indent = None, None
    for key, value in params:
        if key == "fields":
            fields = [field.strip() for field in value.split(",") if field.strip()]
        elif key == "indent":
            if not value.isdigit() or int(value) > 8:
                raise HeaderError(f"`indent` must be a whole number from 0 to 8, not `{value}`")
            indent = int(value) or None
        else:
            raise HeaderError(f"unknown parameter `{key}`; this function takes `fields` and `indent`")
    facts = read_header(bytes(body))
    if fields is not None:
        unknown = [field for field in fields if field not in facts]
        if unknown:
            known = ", ".join(facts)
            raise HeaderError(f"no field `{unknown[0]}` for a {facts['format']} image; it has {known}")
        facts = {field: facts[field] for field in fields}
    return (json.dumps(facts, indent=indent) + "\n").encode()


def read_header(data: bytes) -> dict:
    """The header's facts; `format`, `width` and `height` for every format."""
    readers = [
        (b"\x89PNG\r\n\x1a\n", read_png),
        (b"\xff\xd8\xff", read_jpeg),
        (b"GIF87a", read_gif),
        (b"GIF89a", read_gif),
        (b"BM", read_bmp),
        (b"II*\x00", read_tiff),
        (b"MM\x00*", read_tiff),
    ]
    for magic, reader in readers:
        if data.startswith(magic):
            facts = reader(data)
            break
    else:
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            facts = read_webp(data)
        else:
            raise HeaderError(f"not an image this function reads ({FORMATS})")
    if facts["width"] <= 0 or facts["height"] <= 0:
        raise HeaderError(f"the {facts['format']} header says {facts['width']}x{facts['height']} pixels")
    return facts


def unpack(fmt: str, data: bytes, offset: int, what: str) -> tuple:
    """`struct.unpack_from` that names what was cut short."""
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        raise HeaderError(f"truncated {what}")
    return struct.unpack_from(fmt, data, offset)


# Colour type: its name, channels and the bit depths the format allows.
PNG_COLOURS = {
    0: ("grey", 1, (1, 2, 4, 8, 16)),
    2: ("rgb", 3, (8, 16)),
    3: ("indexed", 1, (1, 2, 4, 8)),
    4: ("grey+alpha", 2, (8, 16)),
    6: ("rgba", 4, (8, 16)),
}


def read_png(data: bytes) -> dict:
    length, kind = unpack(">I4s", data, 8, "PNG header")
    if kind != b"IHDR" or length != 13:
        raise HeaderError("the PNG does not start with its IHDR chunk")
    width, height, depth, colour, _, _, interlace = unpack(">IIBBBBB", data, 16, "PNG IHDR chunk")
    if colour not in PNG_COLOURS:
        raise HeaderError(f"unknown PNG colour type {colour}")
    name, channels, depths = PNG_COLOURS[colour]
    if depth not in depths:
        raise HeaderError(f"a PNG of colour type {name} cannot have bit depth {depth}")
    return {
        "format": "png",
        "width": width,
        "height": height,
        "bit_depth": depth,
        "colour": name,
        "channels": channels,
        "interlaced": interlace == 1,
        "animated": b"acTL" in data[33 : data.find(b"IDAT")] if b"IDAT" in data else False,
    }


# Start-of-frame markers; C4 (DHT), C8 (reserved) and CC (DAC) are not frames.
JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_COLOURS = {1: "grey", 3: "ycbcr", 4: "cmyk"}


def read_jpeg(data: bytes) -> dict:
    offset, orientation = 2, None
    while True:
        # Markers may be padded with any number of 0xFF bytes.
        while offset < len(data) and data[offset] == 0xFF and offset + 1 < len(data) and data[offset + 1] == 0xFF:
            offset += 1
        marker, length = unpack(">xBH", data, offset, "JPEG: no frame header before the data ends")
        if marker in (0xD9, 0xDA):
            raise HeaderError("the JPEG has no frame header (SOF) before its scan")
        if length < 2:
            raise HeaderError(f"JPEG segment {marker:#04x} has length {length}")
        segment = offset + 4
        if marker == 0xE1 and data[segment : segment + 6] == b"Exif\x00\x00":
            orientation = exif_orientation(data[segment + 6 : offset + 2 + length])
        if marker in JPEG_FRAMES:
            depth, height, width, components = unpack(">BHHB", data, segment, "JPEG frame header")
            return {
                "format": "jpeg",
                "width": width,
                "height": height,
                "bit_depth": depth,
                "colour": JPEG_COLOURS.get(components, f"{components} components"),
                "channels": components,
                "progressive": marker in (0xC2, 0xC6, 0xCA, 0xCE),
                "exif_orientation": orientation,
            }
        offset += 2 + length


def exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of an Exif block's first IFD; None when
    absent or unreadable (a broken Exif block does not make the image
    unreadable)."""
    try:
        order, ifd = tiff_byte_order(tiff)
        (count,) = unpack(order + "H", tiff, ifd, "Exif IFD")
        for entry in range(count):
            tag, _, _, value = unpack(order + "HHIH", tiff, ifd + 2 + 12 * entry, "Exif IFD entry")
            if tag == 0x0112:
                return value
    except HeaderError:
        return None
    return None


def tiff_byte_order(tiff: bytes) -> tuple[str, int]:
    """The struct byte order of a TIFF stream and its first IFD's offset."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        raise HeaderError("bad TIFF byte order")
    (magic, ifd) = unpack(order + "HI", tiff, 2, "TIFF header")
    if magic != 42:
        raise HeaderError("bad TIFF magic number")
    return order, ifd


def read_gif(data: bytes) -> dict:
    width, height, packed = unpack("<HHB", data, 6, "GIF screen descriptor")
    has_palette = bool(packed & 0x80)
    return {
        "format": "gif",
        "version": data[3:6].decode(),
        "width": width,
        "height": height,
        "bit_depth": (packed & 0x07) + 1 if has_palette else None,
        "colour": "indexed",
        "global_palette": has_palette,
    }


BMP_COMPRESSION = {0: "none", 1: "rle8", 2: "rle4", 3: "bitfields", 4: "jpeg", 5: "png", 6: "alpha-bitfields"}


def read_bmp(data: bytes) -> dict:
    (info_size,) = unpack("<I", data, 14, "BMP info header")
    if info_size == 12:
        width, height, _, bits = unpack("<HHHH", data, 18, "BMP core header")
        compression = 0
    else:
        width, height, _, bits, compression = unpack("<iiHHI", data, 18, "BMP info header")
    return {
        "format": "bmp",
        "width": width,
        "height": abs(height),
        "bits_per_pixel": bits,
        "compression": BMP_COMPRESSION.get(compression, str(compression)),
        "top_down": height < 0,
    }


def read_webp(data: bytes) -> dict:
    (chunk,) = unpack("4s", data, 12, "WebP chunk")
    if chunk == b"VP8 ":
        # A key frame's start code, then 14-bit sizes.
        if data[23:26] != b"\x9d\x01\x2a":
            raise HeaderError("the lossy WebP frame has no start code")
        width, height = unpack("<HH", data, 26, "lossy WebP frame header")
        return webp("lossy", width & 0x3FFF, height & 0x3FFF, alpha=False, animated=False)
    if chunk == b"VP8L":
        signature, bits = unpack("<BI", data, 20, "lossless WebP header")
        if signature != 0x2F:
            raise HeaderError("the lossless WebP has no signature byte")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return webp("lossless", width, height, alpha=bool(bits >> 28 & 1), animated=False)
    if chunk == b"VP8X":
        (flags,) = unpack("B", data, 20, "extended WebP header")
        w0, w1, w2, h0, h1, h2 = unpack("6B", data, 24, "extended WebP canvas size")
        width = (w0 | w1 << 8 | w2 << 16) + 1
        height = (h0 | h1 << 8 | h2 << 16) + 1
        return webp("extended", width, height, alpha=bool(flags & 0x10), animated=bool(flags & 0x02))
    raise HeaderError(f"unknown WebP chunk {chunk!r}")


def webp(encoding: str, width: int, height: int, alpha: bool, animated: bool) -> dict:
    return {"format": "webp", "encoding": encoding, "width": width, "height": height, "alpha": alpha, "animated": animated}


TIFF_TAGS = {0x0100: "width", 0x0101: "height", 0x0102: "bit_depth", 0x0103: "compression", 0x0115: "channels"}
TIFF_COMPRESSION = {1: "none", 5: "lzw", 6: "old-jpeg", 7: "jpeg", 8: "deflate", 32773: "packbits", 32946: "deflate"}


def read_tiff(data: bytes) -> dict:
    order, ifd = tiff_byte_order(data)
    (count,) = unpack(order + "H", data, ifd, "TIFF IFD")
    facts = {"format": "tiff", "byte_order": "little" if order == "<" else "big", "channels": 1}
    for entry in range(count):
        at = ifd + 2 + 12 * entry
        tag, kind, values = unpack(order + "HHI", data, at, "TIFF IFD entry")
        if tag not in TIFF_TAGS:
            continue
        # SHORT (3) or LONG (4); a list of several (BitsPerSample per channel)
        # lives elsewhere when it does not fit in four bytes.
        size = 2 if kind == 3 else 4
        where = at + 8
        if values * size > 4:
            (where,) = unpack(order + "I", data, at + 8, "TIFF IFD entry")
        (value,) = unpack(order + ("H" if kind == 3 else "I"), data, where, "TIFF tag value")
        facts[TIFF_TAGS[tag]] = value
    if "width" not in facts or "height" not in facts:
        raise HeaderError("the TIFF's first IFD has no image width or length")
    facts["compression"] = TIFF_COMPRESSION.get(facts.get("compression", 1), str(facts.get("compression")))
    return facts
