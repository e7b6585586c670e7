"""Draw one episode of any registered classification data set: support row and query grid.

    python scripts/draw_episode.py                                   # glyphs, test split
    python scripts/draw_episode.py --dataset omniglot --arg data_root=~/data --out ep.png
    python scripts/draw_episode.py --plugin mypkg.mydata --dataset mine --split validation

``--arg key=value`` passes keyword arguments to the data set's constructor (values are read
as Python literals where they parse, else kept as strings).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from metabench import registry
from metabench.data.base import ClassificationDataset
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.plugins import load_plugins
from metabench.protocol import SPLITS, Episode, TaskSpec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="glyphs", help="registered data set name")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=5, help="query images per class shown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=0, help="which episode of the seed")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                        help="constructor argument of the data set (repeatable)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="plugin module that registers the data set (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("episode.png"), help="PNG to write")
    return parser.parse_args(argv)


def constructor_args(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` as keyword arguments, values as Python literals where possible."""
    kwargs = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise MetabenchError(f"--arg '{pair}' is not of the form KEY=VALUE")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs


def as_picture(image: Tensor) -> tuple[Any, str | None]:
    """A ``[C, H, W]`` tensor as something ``imshow`` draws, with its colour map."""
    if image.shape[0] == 1:
        return image[0].numpy(), "gray"
    return image.permute(1, 2, 0).clamp(0, 1).numpy(), None


def draw(episode: Episode, class_names: list[str], title: str) -> Figure:
    """Support set on top (one column per image), queries below (one row per class)."""
    ways = len(episode.classes)
    shots = episode.support_x.shape[0] // ways
    queries = episode.query_x.shape[0] // ways
    columns = max(ways * shots, queries)
    figure = Figure(figsize=(1.1 * columns, 1.15 * (ways + 1) + 0.6), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.25, ways])
    top.suptitle(f"{title}: support set", fontsize=10)
    bottom.suptitle("query set (row = class)", fontsize=10)
    support_axes = top.subplots(1, columns, squeeze=False)[0]
    for i, axis in enumerate(support_axes):
        _show(axis, episode.support_x[i] if i < ways * shots else None)
        if i < ways * shots and i % shots == 0:
            axis.set_title(f"{i // shots}: {class_names[i // shots]}", fontsize=7)
    query_axes = bottom.subplots(ways, columns, squeeze=False)
    for k in range(ways):
        for j in range(columns):
            _show(query_axes[k, j], episode.query_x[k * queries + j] if j < queries else None)
        query_axes[k, 0].set_ylabel(str(k), rotation=0, labelpad=10)
    return figure


def _show(axis: Axes, image: Tensor | None) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    if image is None:
        axis.set_axis_off()
        return
    picture, cmap = as_picture(image.cpu())
    axis.imshow(picture, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        load_plugins(args.plugin)
        dataset = registry.get("dataset", args.dataset).factory(**constructor_args(args.arg))
        if not isinstance(dataset, ClassificationDataset):
            raise MetabenchError(
                f"data set '{args.dataset}' is not a classification data set of images"
            )
        spec = TaskSpec(ways=args.ways, shots=args.shots, queries=args.queries)
        episode = EpisodeSampler(dataset, args.split, spec, seed=args.seed).episode(args.index)
        names = dataset.split(args.split).class_names
        title = f"{args.dataset} {args.split} {spec.label}, seed {args.seed}, episode {args.index}"
        figure = draw(episode, [names[c] for c in episode.classes], title)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=100)
    except MetabenchError as error:
        sys.exit(f"error: {error}")
    print(args.out)


if __name__ == "__main__":
    main()
