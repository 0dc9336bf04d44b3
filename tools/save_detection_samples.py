"""Draw the first training images of the synthetic detection set with their boxes, as a PNG.

    python tools/save_detection_samples.py                 # rewrites data/detection_samples.png
    python tools/save_detection_samples.py -o /tmp/x.png --num-images 12 --seed 1

With the defaults the output is byte-identical to the shipped ``data/detection_samples.png`` (the
preview in ``data/README.md``), whose sha256 is in ``data/MANIFEST.sha256``: run this after a
deliberate change to the generator (``helpers/detection.py``), then
``helpers.sources.write_manifest()``, and commit both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from helpers.datasets import detection_tensors  # noqa: E402
from helpers.detection import draw_detection_grid  # noqa: E402

DEFAULT_OUTPUT = ROOT / "data" / "detection_samples.png"


def save_detection_samples(
    path: str | Path = DEFAULT_OUTPUT, num_images: int = 18, ncols: int = 6, seed: int = 0, root=None
) -> Path:
    """Save a grid of the first ``num_images`` training images with boxes; return the path."""
    images, targets = detection_tensors("train", num_images, seed=seed, root=root)
    grid = draw_detection_grid(images, targets, ncols=ncols, tile=112)
    path = Path(path)
    # a 64-colour palette keeps the PNG near 100 KB
    grid.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="where to write the PNG (default: data/detection_samples.png)")
    parser.add_argument("--num-images", type=int, default=18, help="how many images (default 18)")
    parser.add_argument("--ncols", type=int, default=6, help="images per row (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    args = parser.parse_args(argv)
    path = save_detection_samples(args.output, args.num_images, args.ncols, args.seed)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
