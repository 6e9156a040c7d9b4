"""The parse-only baseline: read every line and validate it into the schema models, nothing else."""

from __future__ import annotations

import sys

from infusion_monitor.schemas import parse_inbound


def main(path: str) -> int:
    count = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                parse_inbound(line)
                count += 1
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
