"""Draw the first training images of a synthetic detection set with their boxes, as a PNG.

    python tools/save_detection_samples.py                 # rewrites data/detection_samples.png
    python tools/save_detection_samples.py --set shapes    # rewrites data/shapes_detection_samples.png
    python tools/save_detection_samples.py -o /tmp/x.png --num-images 12 --seed 1

With the defaults the output is byte-identical to the shipped ``data/detection_samples.png`` (the
banana set) or ``data/shapes_detection_samples.png`` (the multi-object set: rows of images with
boxes coloured and named by class, each followed by a row of their class masks), the previews in
``data/README.md``, whose sha256 are in ``data/MANIFEST.sha256``: run this after a deliberate
change to the generator (``helpers/detection.py``), then ``helpers.sources.write_manifest()``,
and commit both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from helpers.datasets import SHAPE_CLASSES, detection_tensors, shapes_tensors  # noqa: E402
from helpers.detection import draw_detection_grid  # noqa: E402

DEFAULT_OUTPUT = ROOT / "data" / "detection_samples.png"
SHAPES_OUTPUT = ROOT / "data" / "shapes_detection_samples.png"
DEFAULTS = {"bananas": (DEFAULT_OUTPUT, 18), "shapes": (SHAPES_OUTPUT, 12)}  # output, images


def _save(grid: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    # a 64-colour palette keeps the PNG near 100 KB
    grid.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def save_detection_samples(
    path: str | Path = DEFAULT_OUTPUT, num_images: int = 18, ncols: int = 6, seed: int = 0, root=None
) -> Path:
    """Save a grid of the first ``num_images`` training images with boxes; return the path."""
    images, targets = detection_tensors("train", num_images, seed=seed, root=root)
    return _save(draw_detection_grid(images, targets, ncols=ncols, tile=112), path)


def save_shapes_samples(
    path: str | Path = SHAPES_OUTPUT, num_images: int = 12, ncols: int = 6, seed: int = 0, root=None
) -> Path:
    """Save the first ``num_images`` training images of the multi-object set, ``ncols`` a row, each
    row with its boxes (coloured and named by class) followed by a row of the class masks (the
    class colours on dark grey); return the path."""
    images, targets, masks = shapes_tensors("train", num_images, seed=seed, root=root)
    tile = 112
    rows = []
    for start in range(0, num_images, ncols):
        part = slice(start, start + ncols)
        rows.append(draw_detection_grid(images[part], targets[part], ncols, tile, SHAPE_CLASSES))
        backdrop = torch.full_like(images[part], 40)  # dark grey, framed in white
        backdrop[..., :, [0, 1, -2, -1]] = backdrop[..., [0, 1, -2, -1], :] = 255
        rows.append(draw_detection_grid(backdrop, None, ncols, tile, masks=masks[part], alpha=1.0))
    grid = Image.new("RGB", (ncols * tile, sum(row.height for row in rows)), "white")
    for i, row in enumerate(rows):
        grid.paste(row, (0, i * tile))
    return _save(grid, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(DEFAULTS), default="bananas",
                        help="which generated set (default bananas)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where to write the PNG (default: data/detection_samples.png for the bananas, "
                             "data/shapes_detection_samples.png for the shapes)")
    parser.add_argument("--num-images", type=int, default=None,
                        help="how many images (default 18 bananas, 12 shapes)")
    parser.add_argument("--ncols", type=int, default=6, help="images per row (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    args = parser.parse_args(argv)
    output, num_images = DEFAULTS[args.set]
    save = save_detection_samples if args.set == "bananas" else save_shapes_samples
    path = save(args.output or output, args.num_images or num_images, args.ncols, args.seed)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
