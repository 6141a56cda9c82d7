"""Write a stimulus set: 8-bit PNGs, the contact sheet and the manifest, published atomically.

Layout: DIR/manifest.json (valid against contracts/stimulus_manifest.v1.schema.json),
DIR/images/*.png (lossless 8-bit grayscale or RGB at the data set's size) and DIR/contact_sheet.png (rows = conditions,
columns = the same source digits) for eyeballing a set before fielding it.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import contracts
from engine.config import ConfigError

SHEET_COLUMNS, SHEET_ZOOM = 20, 2


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to the 8-bit pixels a PNG stores (rounded, unlike torchattacks' truncating save)."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def norms(image8: torch.Tensor, source8: torch.Tensor) -> dict:
    """L0 / L2 / L∞ of the perturbation between two 8-bit images, in [0, 1] pixel units."""
    d = (image8.float() - source8.float()).flatten() / 255
    return {"l0": int((d != 0).sum()), "l2": round(float(d.norm()), 6), "linf": round(float(d.abs().max()), 6)}


def _pil(image8: torch.Tensor) -> Image.Image:
    """A 1×H×W (grayscale) or 3×H×W (RGB) uint8 image as PIL's."""
    if image8.shape[0] == 3:
        return Image.fromarray(image8.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    return Image.fromarray(image8.reshape(image8.shape[-2:]).numpy(), mode="L")


def png_bytes(image8: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    _pil(image8).save(buffer, format="PNG")
    return buffer.getvalue()


def read_png(path: Path) -> torch.Tensor:
    """A stimulus PNG back as the uint8 C×H×W tensor `png_bytes` wrote."""
    pixels = torch.from_numpy(np.array(Image.open(path)))
    return pixels.permute(2, 0, 1).contiguous() if pixels.dim() == 3 else pixels[None]


def contact_sheet(rows: dict[str, torch.Tensor], headers: list[str]) -> Image.Image:
    """Rows = conditions, columns = the same (source, target) items, wrapped in bands of SHEET_COLUMNS."""
    first = next(iter(rows.values()))[0]
    height, width = first.shape[-2:]
    zoom = max(SHEET_ZOOM, 56 // max(height, width))  # small images (8×8, 32×32) drawn larger, digits at 2×
    # Tiles keep the images' own shape (a 24×32 image is a 24×32 block of zoomed pixels), not a square.
    cell_w, cell_h, margin, header = width * zoom + 2, height * zoom + 2, 90, 14
    bands = [range(s, min(s + SHEET_COLUMNS, len(headers))) for s in range(0, len(headers), SHEET_COLUMNS)]
    band_height = header + cell_h * len(rows) + 6
    mode = "RGB" if first.shape[0] == 3 else "L"
    sheet = Image.new(mode, (margin + cell_w * min(SHEET_COLUMNS, len(headers)), band_height * len(bands)), "white")
    draw = ImageDraw.Draw(sheet)
    for b, columns in enumerate(bands):
        top = b * band_height
        for j, col in enumerate(columns):
            draw.text((margin + j * cell_w + 4, top + 1), headers[col], fill="black")
        for i, (name, images) in enumerate(rows.items()):
            y = top + header + i * cell_h
            draw.text((4, y + cell_h // 3), name, fill="black")
            for j, col in enumerate(columns):
                tile = _pil(images[col]).resize((cell_w - 2, cell_h - 2), Image.NEAREST)
                sheet.paste(tile, (margin + j * cell_w, y))
    return sheet


def write(out: Path, manifest: dict, files: dict[str, bytes], sheet: Image.Image, force: bool = False) -> None:
    """Write the set atomically: into a hidden sibling folder, validated, then renamed into place.

    A crash leaves either the previous folder or the complete new set, never a half-written one.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "images").mkdir()
        for name, data in files.items():
            (staging / name).write_bytes(data)
        sheet.save(staging / "contact_sheet.png")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        contracts.load_stimulus_set(staging)  # never publish a set the study would refuse
        old = out.with_name(f".{out.name}.old-{staging.name.rsplit('.', 1)[-1]}")
        if out.is_dir():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def summary(manifest: dict) -> str:
    counts: dict[str, int] = {}
    for s in manifest["stimuli"]:
        key = s["condition"] if s["role"] == "experimental" else s["role"]
        counts[key] = counts.get(key, 0) + 1
    success = {}
    for s in manifest["stimuli"]:
        if s["attack"] is not None:
            success.setdefault(s["condition"], []).append(s["attack"]["success"])
    rates = ", ".join(f"{c} {100 * np.mean(v):.0f}%" for c, v in success.items())
    return ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; target reached on the saved images: {rates}"
