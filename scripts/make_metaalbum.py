"""Write metabench's ``synthetic`` data set as a Meta-Album-format folder.

The held-out source of docs/multisource.md's comparison (a domain neither glyphs nor
Omniglot resembles: noisy random binary patterns); every class goes into the folder and
``metaalbum`` splits them again (70/15/15 by seed)::

    python scripts/make_metaalbum.py OUT/patterns --classes 100 --examples 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metabench.data.metaalbum import export_metaalbum
from metabench.data.synthetic import SyntheticImages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic images as a Meta-Album folder.")
    parser.add_argument("out", type=Path, help="the data set folder to write")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    dataset = SyntheticImages(classes=(args.classes, 0, 0), examples=args.examples,
                              seed=args.seed)
    print(f"wrote {export_metaalbum(dataset, args.out, ['train'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
