"""Finn et al. 2017's half-cheetah task families (section 5.3) as data sets of task type
``rl``, on Gymnasium's HalfCheetah-v5 model; they need the ``mujoco`` extra (gymnasium and
mujoco from the package index). Both names are always registered, so ``metabench datasets``
lists them; without the extra, building one is a one-line error naming the install command
(and the listing shows it as the note)."""

from __future__ import annotations

import importlib

from metabench.data.base import RLDataset
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterDataset
from metabench.protocol import RL

INSTALL = "pip install 'metabench[mujoco]'"
SOURCE = "generated (Finn et al. 2017, section 5.3) on Gymnasium HalfCheetah-v5"


def require_mujoco(dataset: str) -> None:
    """Fail in one line, naming the install command, when gymnasium or mujoco is missing."""
    for module in ("mujoco", "gymnasium"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise MetabenchError(
                f"data set '{dataset}' needs the mujoco extra (module '{module}' is not "
                f"installed): {INSTALL}"
            ) from None


def halfcheetah_vel() -> RLDataset:
    """Half-cheetah running at a goal velocity uniform in [0, 2] (Finn et al. 2017)."""
    require_mujoco("halfcheetah-vel")
    from metabench.rl.halfcheetah import HalfCheetahVel  # deferred: needs mujoco, an extra

    return RLDataset(HalfCheetahVel(), SOURCE)


def halfcheetah_dir() -> RLDataset:
    """Half-cheetah running forward or backward (Finn et al. 2017)."""
    require_mujoco("halfcheetah-dir")
    from metabench.rl.halfcheetah import HalfCheetahDir  # deferred: needs mujoco, an extra

    return RLDataset(HalfCheetahDir(), SOURCE)


@hookimpl
def register_datasets(register: RegisterDataset) -> None:
    register("halfcheetah-vel", halfcheetah_vel, task_types={RL},
             description="MuJoCo half-cheetah to run at a goal velocity in [0,2], horizon 200 "
                         f"(Finn et al. 2017; needs {INSTALL})")
    register("halfcheetah-dir", halfcheetah_dir, task_types={RL},
             description="MuJoCo half-cheetah to run forward or backward, horizon 200 "
                         f"(Finn et al. 2017; needs {INSTALL})")
