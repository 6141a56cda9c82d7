"""Write a small RGB data set of coloured shapes in the ImageFolder layout: OUT/<shape>/<n>.png.

Three classes (circle, square, triangle) by default, up to ten with `--classes`, 16×16 pixels, a
random colour, size and position per image, from a fixed seed, so the same command writes the same
files everywhere (the first three classes' files do not depend on `--classes`). It stands in for a
researcher's own images: `engine data --dataset OUT` reads it like any folder per class.

    python docs/examples/make_shapes.py out/shapes [--per-class 150] [--classes 10]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 16
SHAPES = ("circle", "square", "triangle", "diamond", "ring", "plus", "cross", "bar", "column", "frame")


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
    elif shape == "triangle":
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "diamond":
        pen.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "ring":
        pen.ellipse(box, outline=colour, width=2)
    elif shape == "plus":
        pen.rectangle((cx - r, cy - 1, cx + r, cy + 1), fill=colour)
        pen.rectangle((cx - 1, cy - r, cx + 1, cy + r), fill=colour)
    elif shape == "cross":
        pen.line((cx - r, cy - r, cx + r, cy + r), fill=colour, width=3)
        pen.line((cx - r, cy + r, cx + r, cy - r), fill=colour, width=3)
    elif shape == "bar":
        pen.rectangle((cx - r, cy - 1, cx + r, cy + 1), fill=colour)
    elif shape == "column":
        pen.rectangle((cx - 1, cy - r, cx + 1, cy + r), fill=colour)
    else:
        pen.rectangle(box, outline=colour, width=2)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--classes", type=int, default=3, choices=range(2, len(SHAPES) + 1), metavar=f"2..{len(SHAPES)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for shape in SHAPES[:args.classes]:
        folder = args.out / shape
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(args.per_class):
            draw(shape, rng).save(folder / f"{n:04d}.png")
    print(f"wrote {args.per_class * args.classes} images to {args.out}/")


if __name__ == "__main__":
    main()
