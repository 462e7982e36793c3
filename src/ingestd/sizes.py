"""Byte counts as people read them, in binary units (one rule for the CLI and the pages)."""

from __future__ import annotations


def iec(n: float | None) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``... (None counts as 0)."""
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
