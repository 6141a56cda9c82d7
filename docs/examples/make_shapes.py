"""Write a small RGB data set of coloured shapes in the ImageFolder layout: OUT/<shape>/<n>.png.

Three classes (circle, square, triangle), 16×16 pixels, a random colour, size and position per
image, from a fixed seed, so the same command writes the same files everywhere. It stands in for
a researcher's own images: `engine data --dataset OUT` reads it like any folder per class.

    python docs/examples/make_shapes.py out/shapes [--per-class 150]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 16
SHAPES = ("circle", "square", "triangle")


def draw(shape: str, rng: np.random.Generator) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 96, 3))
    colour = tuple(int(v) for v in rng.integers(128, 256, 3))
    image = Image.new("RGB", (SIZE, SIZE), background)
    pen = ImageDraw.Draw(image)
    r = int(rng.integers(4, 7))
    cx, cy = (int(v) for v in rng.integers(r + 1, SIZE - r - 1, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for shape in SHAPES:
        folder = args.out / shape
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(args.per_class):
            draw(shape, rng).save(folder / f"{n:04d}.png")
    print(f"wrote {args.per_class * len(SHAPES)} images to {args.out}/")


if __name__ == "__main__":
    main()
