"""Memory: budgets, sizes written for people, what a device has free.

Shared by the expansion (its refusals) and by the polynomial value (its evaluation refuses too),
so it belongs to neither.
"""

from __future__ import annotations

import re

import torch

__all__ = [
    "DEFAULT_MEMORY_FRACTION",
    "available_bytes",
    "budget",
    "fmt_bytes",
    "fmt_count",
    "fmt_seconds",
    "memory_budget",
    "parse_bytes",
]

#: Share of the available (GPU or host) memory an expansion may use by default.
DEFAULT_MEMORY_FRACTION = 0.5

#: Sizes and counts past this are written in scientific notation.
_SCIENTIFIC = 1e6

_SIZE_FORMS = (
    "a number of bytes or a size like '4GiB' or '512MiB', or a share of the free memory "
    "between 0 and 1 like 0.5"
)


def parse_bytes(value: int | float | str, name: str = "max_memory") -> int:
    """Bytes from a number or a string like ``"2GiB"``, ``"512 MB"``.

    ``name`` is the argument's name in the error message (the command line's
    ``--max-memory`` is named there too).

    Examples
    --------
    >>> parse_bytes("1.5 GiB")
    1610612736
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not value > 0 or value == float("inf"):
            raise ValueError(f"{name} must be positive: {_SIZE_FORMS}; got {value!r}.")
        return int(value)
    units = {
        "": 1,
        "b": 1,
        "kb": 1e3,
        "mb": 1e6,
        "gb": 1e9,
        "tb": 1e12,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
        "tib": 2**40,
    }
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in units:
        raise ValueError(
            f"{name} must be {_SIZE_FORMS}; got {str(value)!r}. On the command line: "
            "--max-memory 4GiB."
        )
    size = int(float(match.group(1)) * units[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"{name} must be positive: {_SIZE_FORMS}; got {str(value)!r}.")
    return size


def budget(max_memory: int | float | str | None, device: torch.device) -> int:
    """The memory budget: the default share of free memory, a share given as 0 < x < 1, or
    bytes."""
    if max_memory is None:
        return memory_budget(device)
    share = None
    if isinstance(max_memory, float):
        share = max_memory
    elif isinstance(max_memory, str) and re.fullmatch(r"\s*(0?\.\d+)\s*", max_memory):
        share = float(max_memory)
    if share is not None and 0 < share < 1:
        return memory_budget(device, share)
    return parse_bytes(max_memory)


def memory_budget(device: torch.device | str, fraction: float = DEFAULT_MEMORY_FRACTION) -> int:
    """Default budget: ``fraction`` (half) of the free memory of ``device`` (host RAM for the
    CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        import os

        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return int(available * fraction)


def fmt_bytes(n: float) -> str:
    """A size with a binary unit: ``'2.7 GiB'``, ``'8.6e+25 GiB'`` past a million GiB."""
    if n >= 2**27:
        gib = n / 2**30
        return f"{gib:.1e} GiB" if gib >= _SCIENTIFIC else f"{gib:.1f} GiB"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_count(n: int) -> str:
    """A count with thousands separators, or ``'1.16e+33'`` past 10^15."""
    return f"{n:.3g}" if n >= 1e15 else f"{n:,}"


def fmt_seconds(s: float) -> str:
    """A duration: ms, s, min, or years past 10^5 minutes."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 6e6:
        return f"{s / 60:.0f} min"
    years = s / 3.15576e7
    return f"{years:.1e} years" if years >= _SCIENTIFIC else f"{years:,.0f} years"


def available_bytes(device) -> int:
    """The memory a budget may at most ask for: all of the device's free memory."""
    return int(memory_budget(device) / DEFAULT_MEMORY_FRACTION)
