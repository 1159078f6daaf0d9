"""``python -m polynet``: the same as the ``polynet`` command."""

from __future__ import annotations

from polynet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
