"""Samples/second: reading preprocessed OSIE samples through the LMDB cache vs decoding the JPEGs.

Both paths produce the same samples — the framework's per-image ``FixationSamples`` (decode,
bilinear resize to --size, fixations rescaled, the centre-bias map); the cache is built from the
decoding path, so only the reading differs. Reads are in a shuffled order (as training reads
them), in one process, after one warm-up pass over the cache (the OS page cache then holds it, as
it does during training).

    uv run python -m benchmarks.data_cache --root ../shared/data/osie --size 384 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from code.data.cache import build_cache, fingerprint_dataset
from code.data.centerbias import CenterBias
from code.data.loaders.osie import load_osie
from code.data.samples import FixationSamples, ImageSamples


def rate(source: Sequence, order: np.ndarray) -> float:
    start = time.perf_counter()
    for i in order:
        source[int(i)]
    return len(order) / (time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", required=True, help="the OSIE folder")
    parser.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"))
    parser.add_argument("--cache", help="cache folder (default: a temporary one)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    dataset = load_osie(args.root)
    centerbias = CenterBias(bandwidth=0.05, uniform_weight=0.01).fit(dataset)
    images = ImageSamples(dataset, tuple(args.size))
    decoded = FixationSamples(images, dataset, centerbias.log_density)
    key = {"data": fingerprint_dataset(dataset), "size": args.size, "centerbias": [0.05, 0.01]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.cache) if args.cache else Path(tmp) / "osie"
        start = time.perf_counter()
        cache = build_cache(path, decoded, key, rebuild=False)
        build_s = time.perf_counter() - start
        order = np.random.default_rng(0).permutation(len(decoded))
        for name, array in decoded[int(order[0])].items():
            np.testing.assert_array_equal(cache[int(order[0])][name], array)
        rate(cache, order)  # warm-up: pages into the OS cache
        cached = rate(cache, order)
        jpeg = rate(decoded, order)
        size_mb = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"OSIE, {len(decoded)} images 800x600 -> {args.size[0]}x{args.size[1]}, one process")
    print(f"cache build:        {build_s:8.1f} s ({size_mb:.0f} MiB)")
    print(f"decode JPEG+resize: {jpeg:8.1f} samples/s")
    print(f"LMDB cache read:    {cached:8.1f} samples/s")
    print(f"ratio:              {cached / jpeg:8.1f}x")


if __name__ == "__main__":
    main()
