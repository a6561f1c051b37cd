"""Omni Desk command line (the `omnidesk` console script)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("omnidesk: not built yet")


if __name__ == "__main__":
    raise SystemExit(main())
