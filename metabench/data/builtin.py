"""Registers the built-in data sets through the same hook any plugin uses."""

from __future__ import annotations

from metabench.data.imagefolder import ImageFolder
from metabench.data.metaalbum import MetaAlbum
from metabench.data.omniglot import Omniglot
from metabench.data.sinusoid import Sinusoid
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterDataset


@hookimpl
def register_datasets(register: RegisterDataset) -> None:
    register("sinusoid", Sinusoid, task_types={"regression"},
             description="sine regression, A~U[0.1,5], phase~U[0,pi], x~U[-5,5] (Finn et al. 2017)")
    register("omniglot", Omniglot, task_types={"classification"},
             description="Omniglot (Lake et al. 2015) from --data-root, 28x28, Vinyals or Lake splits")
    register("imagefolder", ImageFolder, task_types={"classification"},
             description="your images in --data-root, one sub-folder per class, split by class")
    register("metaalbum", MetaAlbum, task_types={"classification"},
             description="a Meta-Album folder (labels.csv: FILE_NAME, CATEGORY; images/) from "
                         "--data-root, 70/15/15 seeded class split (Ullah et al. 2022)")
