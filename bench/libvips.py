"""Times libvips on the report's photos (P9): the same job as Sluice's
resize, thumbnail to WIDTH px wide and encode in the source format (JPEG at
QUALITY), on one
thread, with the encoder settings matched to Sluice's as far as libvips
has them. Prints one JSON object per photo on stdout: its median ms and
output bytes, or why libvips could not do it.

Usage: python3 libvips.py WIDTH QUALITY RUNS PHOTO...
       python3 libvips.py --version

VIPS_CONCURRENCY=1 must be in the environment before pyvips loads (the
report sets it), so libvips uses one thread as Sluice's sandbox does.
"""

import json
import os
import statistics
import sys
import time

import pyvips

# Source format (libvips loader name prefix) -> (saver, options, what Sluice does).
SAVERS = {
    # Sluice: baseline JPEG at the requested quality, no optimised tables.
    "jpeg": ("jpegsave_buffer", {"optimize_coding": False, "interlace": False}),
    # Sluice: fast deflate, adaptive filter per row.
    "png": ("pngsave_buffer", {"compression": 1, "filter": "all"}),
    # Sluice: lossless WebP.
    "webp": ("webpsave_buffer", {"lossless": True}),
    "gif": ("gifsave_buffer", {}),
    # Sluice: uncompressed TIFF.
    "tiff": ("tiffsave_buffer", {"compression": "none"}),
}


def source_format(data):
    loader = pyvips.Image.new_from_buffer(data, "", access="sequential").get("vips-loader")
    return loader.removesuffix("load_buffer").removesuffix("load_source").removesuffix("load")


def resize(data, width, saver, options):
    thumb = pyvips.Image.thumbnail_buffer(data, width, height=10_000_000)
    return getattr(thumb, saver)(**options)


def main():
    if sys.argv[1:] == ["--version"]:
        print("libvips %d.%d.%d (pyvips %s)" % (pyvips.version(0), pyvips.version(1), pyvips.version(2), pyvips.__version__))
        return
    width, quality, runs, paths = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    SAVERS["jpeg"][1]["Q"] = quality
    # Every run decodes and encodes again, as every Sluice call does.
    pyvips.cache_set_max(0)
    for path in paths:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            data = f.read()
        try:
            fmt = source_format(data)
        except pyvips.Error as err:
            print(json.dumps({"photo": name, "error": f"libvips cannot load it: {err.message.strip()}"}))
            continue
        if fmt not in SAVERS:
            print(json.dumps({"photo": name, "error": f"libvips has no {fmt} encoder"}))
            continue
        saver, options = SAVERS[fmt]
        try:
            resize(data, width, saver, options)
        except pyvips.Error as err:
            print(json.dumps({"photo": name, "error": f"libvips refused it: {err.message.strip()}"}))
            continue
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            out = resize(data, width, saver, options)
            times.append((time.perf_counter() - started) * 1e3)
        print(json.dumps({"photo": name, "ms": statistics.median(times), "bytes": len(out)}), flush=True)


if __name__ == "__main__":
    main()
