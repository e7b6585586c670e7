"""The papers' protocols and published tables, as presets, registered by this plugin
(``register_presets``; entry point ``papers``). It imports no torch and no algorithm plugin, so
reading a preset run's results (``metabench report``) loads neither.

Every number and hyperparameter was checked against the paper and the authors' code where
a copy could be read (docs/reproduce.md lists what could not be, and what differs here).
Each Omniglot preset uses its paper's split (``metabench datasets omniglot`` lists them),
with rotations as extra classes; mini-ImageNet and CUB presets need the learn2learn files in
``--data-root``.
"""

from __future__ import annotations

import metabench
from metabench import Preset, Published

# Snell et al.'s files of the Vinyals split (whole alphabets); their final models train on
# trainval (jakesnell/prototypical-networks, scripts/train/few_shot/run_trainval.py).
OMNIGLOT_VINYALS = {"omniglot": {"split": "vinyals", "trainval": True, "rotations": True}}
# cbfinn/maml's 1,100 / 100 / 423 characters (its own order cannot be replayed: it shuffles
# an unsorted os.listdir with random.seed(1)).
OMNIGLOT_SHUFFLED = {"omniglot": {"split": "shuffled", "rotations": True}}
# openai/supervised-reptile's split_dataset after random.seed(0): 1,200 train / 423 test.
OMNIGLOT_NICHOL = {"omniglot": {"split": "nichol", "rotations": True}}
FOUR_SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")
NEEDS_MINI = "mini-ImageNet: learn2learn's mini-imagenet-cache-*.pkl in --data-root"

FINN = "Finn et al. 2017, ICML (arXiv:1703.03400v3)"
FINN_TABLE = "Finn et al. 2017, Table 1 (95% CI over 600 test tasks)"
NICHOL = "Nichol et al. 2018 (arXiv:1803.02999v3)"
NICHOL_TABLE = "Nichol et al. 2018 (arXiv:1803.02999v3), Tables 1-2"
SNELL = "Snell et al. 2017, NeurIPS (arXiv:1703.05175v2)"
MAML_RL = "cbfinn/maml_rl"


def _rows(algorithm: str, settings: tuple[str, ...], values: tuple[tuple[float, float | None], ...],
          source: str, kind: str = "95% CI") -> tuple[Published, ...]:
    return tuple(Published(algorithm, setting, value, interval, kind if interval else "", source)
                 for setting, (value, interval) in zip(settings, values, strict=True))


# --- MAML: Finn et al. 2017 -------------------------------------------------------------------

_MAML_OMNIGLOT = {
    # Appendix A.1 and cbfinn/maml's README: 5-way alpha 0.4, 1 step (3 at test), 32 tasks;
    # 20-way alpha 0.1, 5 steps (5 at test), 16 tasks; Adam 1e-3; 60,000 iterations.
    "meta_batch_size": 32, "inner_lr": 0.4, "train_steps": 1, "test_steps": 3, "meta_lr": 1e-3,
    "transductive": True,
}
_MAML_OMNIGLOT_20W = {"meta_batch_size": 16, "inner_lr": 0.1, "train_steps": 5, "test_steps": 5}

FINN2017_OMNIGLOT = Preset(
    title="MAML and first-order MAML on Omniglot",
    source=FINN,
    compare={
        "algorithms": ["maml", "fomaml"], "datasets": ["omniglot"],
        "dataset_options": OMNIGLOT_SHUFFLED, "ways": [5, 20], "shots": [1, 5], "queries": 15,
        "episodes": 600, "budget": "steps:60000", "backbone": "conv4-strided",
        "checkpoint": "last",
        "hparams": {"maml": _MAML_OMNIGLOT, "fomaml": _MAML_OMNIGLOT,
                    "maml@20w": _MAML_OMNIGLOT_20W, "fomaml@20w": _MAML_OMNIGLOT_20W},
    },
    published=(
        _rows("maml", FOUR_SETTINGS, ((98.7, 0.4), (99.9, 0.1), (95.8, 0.3), (98.9, 0.2)),
              FINN_TABLE)
        # Finn et al. give first-order MAML on mini-ImageNet only; these Omniglot numbers are
        # the "1st-order MAML + Transduction" row of Nichol et al. 2018, Table 2.
        + _rows("fomaml", FOUR_SETTINGS, ((98.3, 0.5), (99.2, 0.2), (89.4, 0.5), (97.9, 0.1)),
                "Nichol et al. 2018 (arXiv:1803.02999v3), Table 2, 1st-order MAML")
    ),
    notes=(
        "Finn et al. test the last weights (no selection on validation): checkpoint = last.",
        "Batch norm uses the statistics of the batch it sees, query sets included "
        "(transductive), as in cbfinn/maml.",
        "Queries: 15 per class here; cbfinn/maml uses K query images per class (1 or 5).",
        "Rotations: cbfinn/maml draws one rotation per class per task; here each rotation is "
        "a class of its own (Vinyals et al., Snell et al.). Split 'shuffled': 1,100 train / 100 "
        "validation / 423 test characters, alphabets mixed, as in cbfinn/maml (data_generator.py)"
        ", in another random order (theirs shuffles an unsorted os.listdir: not replayable).",
        "Network: four stride-2 convolutions (conv4-strided); cbfinn/maml averages the last "
        "feature map over space, conv4-strided flattens it (as Nichol et al.).",
        "cbfinn/maml sums the inner loss over the N*K support images and divides by K: in "
        "terms of the mean loss used here its inner step is N times alpha (2.0 for 5-way). "
        "The preset keeps the paper's alpha, as learn2learn does.",
    ),
)

_MAML_MINI = {"meta_batch_size": 4, "inner_lr": 0.01, "train_steps": 5, "test_steps": 10,
              "meta_lr": 1e-3, "transductive": True}

FINN2017_MINIIMAGENET = Preset(
    title="MAML and first-order MAML on mini-ImageNet",
    source=FINN,
    compare={
        "algorithms": ["maml", "fomaml"], "datasets": ["mini-imagenet"], "ways": [5],
        "shots": [1, 5], "queries": 15, "episodes": 600, "budget": "steps:60000",
        "backbone": "conv4-32", "checkpoint": "last",
        "hparams": {"maml": _MAML_MINI, "fomaml": _MAML_MINI,
                    "maml@5s": {"meta_batch_size": 2}, "fomaml@5s": {"meta_batch_size": 2}},
    },
    published=(
        _rows("maml", ("5w1s", "5w5s"), ((48.70, 1.84), (63.11, 0.92)), FINN_TABLE)
        + _rows("fomaml", ("5w1s", "5w5s"), ((48.07, 1.75), (63.15, 0.91)), FINN_TABLE)
    ),
    notes=(
        "32 filters, 2x2 max-pooling (conv4-32); 5 inner steps with alpha 0.01 in training, "
        "10 at test; meta-batch 4 (1-shot) and 2 (5-shot, paper appendix; the README "
        "command uses 4); the last weights are tested.",
        "cbfinn/maml clips meta-gradients to [-10, 10] on mini-ImageNet; not done here.",
        "Test queries: cbfinn/maml's main.py tests with K query images per class (1 or 5; 15 "
        "only in training); here 15 per class in every setting (one value per run): the "
        "intervals are narrower than the paper's, the protocol otherwise the same.",
    ),
    requires=NEEDS_MINI,
)

# Finn et al. 2017, section 5.1 and Appendix C.1, Table 2: trained at K = 10, fine-tuned and
# tested with K = 5 points (cbfinn/maml main.py tests on K query points, 600 tasks).
_SINE_MAML = {"meta_batch_size": 25, "inner_lr": 0.01, "train_steps": 1, "test_steps": 1,
              "meta_lr": 1e-3, "vmap_tasks": True, "train_shots": 10, "train_queries": 10}
FINN_SINE_TABLE = "Finn et al. 2017, Appendix C.1, Table 2 (5-shot MSE after 1 step; no interval)"

FINN2017_SINUSOID = Preset(
    title="MAML and the pretrained baseline on sinusoid regression",
    source=FINN + ", section 5.1",
    compare={
        "algorithms": ["maml", "pretrained"], "variants": {"pretrained": "maml"},
        "datasets": ["sinusoid"], "shots": [5], "queries": 5, "episodes": 600,
        "budget": "steps:70000", "checkpoint": "last",
        "hparams": {
            # Section 5.1: one step with alpha 0.01, K = 10 in training, Adam; cbfinn/maml: 25
            # tasks per step, meta lr 1e-3, 70,000 iterations, a 1-40-40-1 ReLU network.
            "maml": _SINE_MAML,
            # Pretrained on all tasks (no inner step in training), fine-tuned with one step.
            "pretrained": {**_SINE_MAML, "train_steps": 0},
        },
    },
    published=(Published("maml", "5shot", 0.67, None, "", FINN_SINE_TABLE),
               Published("pretrained", "5shot", 2.41, None, "", FINN_SINE_TABLE)),
    notes=(
        "Table 2 also gives the MSE after 5 and 10 steps (MAML 0.38, 0.35; pretrained 2.23, "
        "2.19); the preset tests after the one step the model was trained with.",
        "Trained with K = 10 points per task (train_shots 10), fine-tuned and tested with K = 5 "
        "and 5 query points, as the table and cbfinn/maml's test; 600 test tasks, the last "
        "weights.",
        "The inner step is the paper's alpha 0.01 (section 5.1); cbfinn/maml's README command "
        "leaves --update_lr at its default 1e-3.",
        "The pretrained baseline fine-tunes with alpha 0.01; the paper tuned its step size "
        "automatically.",
    ),
)

# --- MAML-RL: Finn et al. 2017, section 5.3, 2D navigation -----------------------------------

# cbfinn/maml_rl maml_examples/maml_trpo_point.py (the evaluated run: meta-batch 20, as the
# paper's A.2) and test_maml_point.py: 20 trajectories per task in training, inner step 0.5,
# 100 meta-iterations, the last weights; at test 40 goals, 40 trajectories a step, steps of
# 0.5 then 0.25. The paper's alpha 0.1 does not hold for this domain (its code).
_NAV_STEPS = {"inner_lr": 0.5, "curve_inner_lr": 0.25}
_NAV_TABLE = ("cbfinn/maml_rl icml/icml_point_results_{}.pkl: mean over 40 test goals "
              "± standard error (ddof 0)")


def _curve(algorithm: str, setting: str, source: str,
           values: tuple[tuple[float, float], ...]) -> tuple[Published, ...]:
    """A published adaptation curve (mean ± standard error after 0, 1, ... steps): step 1 is
    the setting's main score, the other steps points of its curve."""
    return tuple(Published(algorithm, setting, value, interval, "standard error", source,
                           step=None if step == 1 else step)
                 for step, (value, interval) in enumerate(values))


FINN2017_NAVIGATION2D = Preset(
    title="MAML-RL, pretrained and random-init policies on 2D navigation (adaptation curve)",
    source=FINN + ", section 5.3, figure 4",
    compare={
        "algorithms": ["maml", "pretrained", "random"], "datasets": ["navigation2d"],
        "dataset_options": {"navigation2d": {"normalized_actions": True}},
        "shots": [40], "queries": 40, "episodes": 40, "budget": "steps:100",
        "checkpoint": "last", "curve_steps": 3,
        "hparams": {
            "maml": {"meta_batch_size": 20, "train_steps": 1, "train_shots": 20,
                     "train_queries": 20, "meta_lr": 1e-3, **_NAV_STEPS},
            # The "maml0" run of test_maml_point.py: the same script with use_maml=False, one
            # Adam step (lr 1e-3) a meta-iteration on 20 tasks of 20 trajectories.
            "pretrained": {"meta_batch_size": 20, "lr": 1e-3, "train_shots": 20, **_NAV_STEPS},
            "random": _NAV_STEPS,
        },
    },
    published=(
        _curve("maml", "40traj", _NAV_TABLE.format("maml"),
               ((-40.41, 2.04), (-11.68, 1.10), (-3.33, 0.28), (-3.23, 0.29)))
        + _curve("pretrained", "40traj", _NAV_TABLE.format("sens0"),
                 ((-40.81, 2.06), (-19.73, 1.52), (-11.72, 0.84), (-8.47, 0.27)))
        + _curve("random", "40traj", _NAV_TABLE.format("random"),
                 ((-82.66, 1.10), (-57.96, 0.94), (-53.84, 0.83), (-46.81, 0.65)))
    ),
    notes=(
        "The main score is the return after one adaptation step; curve_steps 3 also scores "
        "the unadapted policy and steps 2 and 3, each on fresh support trajectories of the "
        "current policy (Finn et al., figure 4). The oracle (goal observed) returns -2.29 "
        "± 0.07; metabench has no oracle policy.",
        "The outer loop is Adam (lr 1e-3) on the meta-gradient; the paper's is TRPO (KL step "
        "0.01). Training: 20 tasks of 20 + 20 trajectories, one inner step of 0.5, 100 "
        "meta-iterations, the last weights (maml_trpo_point.py; the paper's A.2 says up to "
        "500 iterations, the best during training).",
        "Actions are normalised as rllab's normalize wrapper does (the policy acts in [-1, 1], "
        "scaled to the 0.1 velocity bound), so the authors' step sizes apply.",
        "The random-init policy is the shared ReLU initialisation; the authors' random policy "
        "is a fresh tanh network (rllab's default).",
        "Test: 40 tasks drawn from the same goal distribution by metabench's seeded sampler "
        "(the authors': numpy seed 1); 40 support trajectories a step and 40 query "
        "trajectories scored on their own (the authors report the return of the trajectories "
        "the next step learns from).",
        "pretrained's published curve is icml_point_results_sens0.pkl: make_point_plots.py "
        "reads a maml0.pkl that the repository lacks, and test_maml_point.py's maml0 run is "
        "the pretrained policy (use_maml=False).",
    ),
)

# --- MAML-RL: Finn et al. 2017, section 5.3, half-cheetah (figure 5) ---------------------------

_CHEETAH_TABLE = ("cbfinn/maml_rl icml/icml_{}_results_{}.pkl: mean over 40 test goals ± standard "
                  "error (ddof 0)")
NEEDS_MUJOCO = "the mujoco extra: pip install 'metabench[mujoco]'"
CHEETAH_MODEL = ("Gymnasium's HalfCheetah-v5 model is not the paper's rllab model (frame skip 5 "
                 "against 1, 17 observations against 20, root against centre-of-mass velocity, "
                 "other reset noise, MuJoCo 4 against 1.31; docs/rl.md)")


def _cheetah_notes(evaluated: str) -> tuple[str, ...]:
    return (
        "Every verdict is 'not comparable': " + CHEETAH_MODEL + ".",
        evaluated,
        "Test (maml_examples/test_maml_cheetah*.py): 40 goals, 20 trajectories a step, 0..3 "
        "steps, each later step half the first's size; the outer loop here is Adam (lr 1e-3), "
        "the paper's TRPO; pretrained here is the multi-task policy-gradient baseline "
        "(theirs: TRPO on the randomised environment, 100 trajectories an iteration).",
    )


FINN2017_HALFCHEETAH_VEL = Preset(
    title="MAML-RL, pretrained and random-init policies on half-cheetah goal velocity",
    source=FINN + ", section 5.3, figure 5",
    compare={
        "algorithms": ["maml", "pretrained", "random"], "datasets": ["halfcheetah-vel"],
        "shots": [20], "queries": 20, "episodes": 40, "budget": "steps:475",
        "checkpoint": "last", "curve_steps": 3,
        "hparams": {
            # The evaluated run: maml1_fbs10_mbs40_flr_0.1_mlr0.01/itr_475 (test_maml_cheetah.py).
            "maml": {"meta_batch_size": 40, "train_steps": 1, "train_shots": 10, "train_queries": 10,
                     "meta_lr": 1e-3, "inner_lr": 0.1, "curve_inner_lr": 0.05},
            "pretrained": {"meta_batch_size": 10, "lr": 1e-3, "train_shots": 10,
                           "inner_lr": 0.02, "curve_inner_lr": 0.01},
            "random": {"inner_lr": 0.1, "curve_inner_lr": 0.05},
        },
    },
    published=(
        _curve("maml", "20traj", _CHEETAH_TABLE.format("cheetah", "maml"),
                       ((-129.53, 8.44), (-78.57, 5.03), (-66.62, 4.56), (-60.78, 4.40)))
        + _curve("pretrained", "20traj", _CHEETAH_TABLE.format("cheetah", "pretrain"),
                         ((-158.00, 8.85), (-135.39, 7.68), (-128.47, 7.13), (-133.61, 8.39)))
        + _curve("random", "20traj", _CHEETAH_TABLE.format("cheetah", "random"),
                         ((-254.83, 18.22), (-254.33, 17.68), (-246.79, 18.04), (-230.83, 17.43)))
    ),
    notes=_cheetah_notes(
        "Training as the evaluated run (maml1_fbs10_mbs40_flr_0.1_mlr0.01, iteration 475): 40 "
        "tasks of 10 + 10 trajectories, one inner step of 0.1, horizon 200; test steps 0.1, then "
        "0.05 (maml and random), 0.02 then 0.01 (pretrained). Oracle -54.47 ± 3.54 (no "
        "metabench counterpart)."),
    requires=NEEDS_MUJOCO,
    incomparable=CHEETAH_MODEL,
)

FINN2017_HALFCHEETAH_DIR = Preset(
    title="MAML-RL, pretrained and random-init policies on half-cheetah forward/backward",
    source=FINN + ", section 5.3, figure 5, Appendix C.2 Table 5",
    compare={
        "algorithms": ["maml", "pretrained", "random"], "datasets": ["halfcheetah-dir"],
        "shots": [20], "queries": 20, "episodes": 40, "budget": "steps:100",
        "checkpoint": "last", "curve_steps": 3,
        "hparams": {
            # The evaluated run: maml1_fbs20_mbs40_flr_0.1_mlr0.02/itr_100 (test_maml_cheetah_direc.py).
            "maml": {"meta_batch_size": 40, "train_steps": 1, "train_shots": 20, "train_queries": 20,
                     "meta_lr": 1e-3, "inner_lr": 0.1, "curve_inner_lr": 0.05},
            "pretrained": {"meta_batch_size": 5, "lr": 1e-3, "train_shots": 20,
                           "inner_lr": 0.2, "curve_inner_lr": 0.1},
            "random": {"inner_lr": 1.0, "curve_inner_lr": 0.5},
        },
    },
    published=(
        _curve("maml", "20traj", _CHEETAH_TABLE.format("cheetahdirec", "maml"),
                       ((-50.69, 2.93), (293.19, 8.68), (313.48, 8.04), (315.65, 7.06)))
        + _curve("pretrained", "20traj", _CHEETAH_TABLE.format("cheetahdirec", "pretrain"),
                         ((-43.03, 5.92), (-24.75, 4.75), (-12.85, 4.36), (19.57, 5.72)))
        + _curve("random", "20traj", _CHEETAH_TABLE.format("cheetahdirec", "random"),
                         ((-35.73, 0.65), (21.83, 1.48), (62.32, 2.57), (86.18, 4.96)))
    ),
    notes=_cheetah_notes(
        "Training as the evaluated run (maml1_fbs20_mbs40_flr_0.1_mlr0.02, iteration 100): 40 "
        "tasks of 20 + 20 trajectories, one inner step of 0.1; test steps 0.1 then 0.05 (maml), "
        "0.2 then 0.1 (pretrained), 1.0 then 0.5 (random: the script's ICML list; its last "
        "lines rerun random with 0.5, and which made the pickle is not recorded). MAML's row is "
        "also the paper's Appendix C.2, Table 5. Oracle 442.69 ± 4.27."),
    requires=NEEDS_MUJOCO,
    incomparable=CHEETAH_MODEL,
)

# --- Prototypical Networks: Snell et al. 2017 ---------------------------------------------------

SNELL2017_OMNIGLOT = Preset(
    title="Prototypical Networks on Omniglot",
    source=SNELL,
    compare={
        "algorithms": ["protonet"], "datasets": ["omniglot"],
        "dataset_options": OMNIGLOT_VINYALS, "ways": [5, 20], "shots": [1, 5], "queries": 15,
        "episodes": 1000, "budget": "episodes:40000", "checkpoint": "last",
        # Section 3.1: 60-way training episodes, 5 queries per class, the test shot; Adam
        # 1e-3 halved every 2000 episodes.
        "hparams": {"protonet": {"train_ways": 60, "train_queries": 5, "lr": 1e-3,
                                 "lr_halving_every": 2000}},
    },
    published=_rows("protonet", FOUR_SETTINGS, ((98.8, None), (99.7, None), (96.0, None),
                                                (98.9, None)),
                    "Snell et al. 2017, Table 1 (1000 test episodes, no interval given)"),
    notes=(
        "Split: the authors' files of the Vinyals split (whole alphabets); the final model "
        "trains on trainval (1,200 characters x 4 rotations) and the last weights are tested, "
        "as jakesnell/prototypical-networks' run_trainval.py.",
        "Training length: the authors first train on train with early stopping on the "
        "validation loss (patience 200 epochs of 100 episodes), then retrain on trainval for "
        "the best epoch + 200 epochs; that epoch is not published. The learning rate halves "
        "every 2000 episodes (1e-3 / 2^20 after 40,000), so the preset trains 40,000.",
        "Test-time batch norm uses running averages (model.eval()), as in the authors' code; "
        "1000 test episodes of 15 queries per class.",
    ),
)

SNELL2017_MINIIMAGENET = Preset(
    title="Prototypical Networks on mini-ImageNet",
    source=SNELL,
    compare={
        "algorithms": ["protonet"], "datasets": ["mini-imagenet"], "ways": [5], "shots": [1, 5],
        "queries": 15, "episodes": 600, "budget": "episodes:40000",
        # Section 3.2: 30-way (1-shot) and 20-way (5-shot) training, 15 queries per class.
        "hparams": {"protonet": {"train_queries": 15}, "protonet@1s": {"train_ways": 30},
                    "protonet@5s": {"train_ways": 20}},
    },
    published=_rows("protonet", ("5w1s", "5w5s"), ((49.42, 0.78), (68.20, 0.66)),
                    "Snell et al. 2017, Table 2 (95% CI over 600 test episodes)"),
    notes=("Trained until the validation loss stops improving in the paper; 40,000 episodes "
           "and the best weights on validation here (see snell2017-omniglot).",),
    requires=NEEDS_MINI,
)

# --- Reptile: Nichol et al. 2018 ----------------------------------------------------------------

# openai/supervised-reptile README at HEAD (8f2b71c), "the commands used for the paper" (the
# June 2018 commit 361145c, "update commands to match latest version of the paper", as later
# corrected by 7f815bc, #17 and #18; v3 Appendix A, Table 3 (Omniglot) and Table 4
# (mini-ImageNet)); transductive runs use the same commands plus --transductive (the author,
# openai/supervised-reptile#15). Flags: --learning-rate, --inner-iters, --inner-batch,
# --train-shots, --eval-iters, --eval-batch, --meta-step, --meta-step-final, --meta-batch.
_REPTILE_OMNIGLOT_5W = {"inner_lr": 0.001, "inner_steps": 5, "inner_batch": 10, "train_shots": 10,
                        "test_steps": 50, "test_batch": 5, "outer_lr": 1.0, "outer_lr_final": 0.0,
                        "meta_batch_size": 5, "transductive": False}
_REPTILE_OMNIGLOT_20W = {"inner_lr": 0.0005, "inner_steps": 10, "inner_batch": 20,
                         "test_batch": 10}
_REPTILE_OMNIGLOT = {
    "reptile": _REPTILE_OMNIGLOT_5W, "reptile@20w": _REPTILE_OMNIGLOT_20W,
    "reptile-transductive": {**_REPTILE_OMNIGLOT_5W, "transductive": True},
    "reptile-transductive@20w": _REPTILE_OMNIGLOT_20W,
}
# --meta-iters: 100,000 for 5-way, 200,000 for 20-way.
_REPTILE_BUDGETS = {"20w": "steps:200000"}

NICHOL2018_OMNIGLOT = Preset(
    title="Reptile on Omniglot, transductive and not",
    source=NICHOL,
    compare={
        "algorithms": ["reptile", "reptile-transductive"],
        "variants": {"reptile-transductive": "reptile"},
        "datasets": ["omniglot"], "dataset_options": OMNIGLOT_NICHOL, "ways": [5, 20],
        "shots": [1, 5], "queries": 1, "episodes": 10000, "budget": "steps:100000",
        "budgets": _REPTILE_BUDGETS, "backbone": "conv4-strided", "checkpoint": "last",
        "hparams": _REPTILE_OMNIGLOT,
    },
    published=(
        _rows("reptile", FOUR_SETTINGS, ((95.39, 0.09), (98.90, 0.10), (88.14, 0.15),
                                         (96.65, 0.33)), NICHOL_TABLE, "unknown")
        + _rows("reptile-transductive", FOUR_SETTINGS,
                ((97.68, 0.04), (99.48, 0.06), (89.43, 0.14), (97.12, 0.32)),
                NICHOL_TABLE, "unknown")
    ),
    notes=(
        "Hyperparameters per setting from the README's commands (5-way: Adam 1e-3, 5 inner "
        "steps of batch 10, 10 training shots, meta-batch 5, 50 test steps of batch 5; 20-way: "
        "5e-4, 10 steps of batch 20, 50 test steps of batch 10); transductive cells use the "
        "same values.",
        "Budget: 100,000 meta-iterations for 5-way, 200,000 for 20-way (--meta-iters).",
        "Split: the authors' split_dataset (random.seed(0) shuffle of the sorted characters): "
        "1,200 training and 423 test characters, no validation set, so the last weights are "
        "tested and validation episodes (learning curves only) come from the training "
        "characters.",
        "Non-transductive: each query image is classified in a batch with the support set "
        "(reptile.transductive = false), as in openai/supervised-reptile.",
        "Evaluation: 10,000 test tasks of one query image per class, the last weights, as in "
        "the authors' code. The paper does not say what its +- is; it is treated as an "
        "interval of unknown kind.",
        "Rotations: the authors rotate the training characters only; here the test classes "
        "are rotated too.",
    ),
)

_REPTILE_MINI = {"inner_lr": 0.001, "inner_steps": 8, "inner_batch": 10, "train_shots": 15,
                 "test_steps": 50, "test_batch": 5, "outer_lr": 1.0, "outer_lr_final": 0.0,
                 "meta_batch_size": 5, "transductive": False}
_REPTILE_MINI_5S = {"test_batch": 15}

NICHOL2018_MINIIMAGENET = Preset(
    title="Reptile on mini-ImageNet, transductive and not",
    source=NICHOL,
    compare={
        "algorithms": ["reptile", "reptile-transductive"],
        "variants": {"reptile-transductive": "reptile"},
        "datasets": ["mini-imagenet"], "ways": [5], "shots": [1, 5], "queries": 1,
        "episodes": 10000, "budget": "steps:100000", "backbone": "conv4-32",
        "checkpoint": "last",
        "hparams": {
            "reptile": _REPTILE_MINI, "reptile@5s": _REPTILE_MINI_5S,
            "reptile-transductive": {**_REPTILE_MINI, "transductive": True},
            "reptile-transductive@5s": _REPTILE_MINI_5S,
        },
    },
    published=(
        _rows("reptile", ("5w1s", "5w5s"), ((47.07, 0.26), (62.74, 0.37)), NICHOL_TABLE,
              "unknown")
        + _rows("reptile-transductive", ("5w1s", "5w5s"), ((49.97, 0.32), (65.99, 0.58)),
                NICHOL_TABLE, "unknown")
    ),
    notes=("The authors' network max-pools with 'same' padding (6x6x32 features); conv4-32 "
           "pools with 'valid' padding (5x5x32).",
           "The README's commands: Adam 1e-3, 8 inner steps of batch 10, 15 training shots, "
           "meta-batch 5, 100,000 meta-iterations, 50 test steps of batch 5 (1-shot) or 15 "
           "(5-shot); transductive cells use the same values."),
    requires=NEEDS_MINI,
)

# --- the zoo ------------------------------------------------------------------------------------

LI2017_MINIIMAGENET = Preset(
    title="Meta-SGD on mini-ImageNet",
    source="Li et al. 2017 (arXiv:1707.09835)",
    compare={
        "algorithms": ["metasgd"], "datasets": ["mini-imagenet"], "ways": [5], "shots": [1, 5],
        "queries": 15, "episodes": 600, "budget": "steps:60000", "backbone": "conv4-32",
        "hparams": {"metasgd": {"meta_batch_size": 4, "train_steps": 1, "test_steps": 1}},
    },
    published=_rows("metasgd", ("5w1s", "5w5s"), ((50.47, 1.87), (64.03, 0.94)),
                    "Li et al. 2017, Table 2 (as quoted by later papers)", "unknown"),
    notes=("The paper's text could not be read here: the values agree with two later "
           "papers that quote them; the interval's kind and the training length follow MAML "
           "and are not confirmed.",),
    requires=NEEDS_MINI,
)

RAGHU2020_OMNIGLOT = Preset(
    title="ANIL on Omniglot 20-way and mini-ImageNet",
    source="Raghu et al. 2020, ICLR (arXiv:1909.09157)",
    compare={
        "algorithms": ["anil"], "datasets": ["omniglot"], "dataset_options": OMNIGLOT_SHUFFLED,
        "ways": [20], "shots": [1, 5], "queries": 15, "episodes": 600, "budget": "steps:60000",
        "checkpoint": "last",
        # "the same model architectures as the original MAML authors"
        "backbone": "conv4-strided",
        "hparams": {"anil": {**_MAML_OMNIGLOT, **_MAML_OMNIGLOT_20W}},
    },
    published=_rows("anil", ("20w1s", "20w5s"), ((96.2, 0.5), (98.0, 0.3)),
                    "Raghu et al. 2020, Table 2 (std over 3 initialisations)", "std"),
    notes=("ANIL adapts the head only. The paper's experiments are 20-way Omniglot and 5-way "
           "mini-ImageNet with 'the same model architectures as the original MAML authors'; "
           "the hyperparameters here are MAML's for 20-way Omniglot (Finn et al. A.1), taken "
           "from MAML, not from the ANIL paper (its appendix could not be read here). The "
           "split is cbfinn/maml's shape (ANIL builds on MAML's code).",),
)

RAGHU2020_MINIIMAGENET = Preset(
    title="ANIL on mini-ImageNet",
    source="Raghu et al. 2020, ICLR (arXiv:1909.09157)",
    compare={
        "algorithms": ["anil"], "datasets": ["mini-imagenet"], "ways": [5], "shots": [1, 5],
        "queries": 15, "episodes": 600, "budget": "steps:60000", "backbone": "conv4-32",
        "checkpoint": "last", "hparams": {"anil": _MAML_MINI, "anil@5s": {"meta_batch_size": 2}},
    },
    published=_rows("anil", ("5w1s", "5w5s"), ((46.7, 0.4), (61.5, 0.5)),
                    "Raghu et al. 2020, Table 2 (std over 3 initialisations)", "std"),
    notes=("MAML's mini-ImageNet settings (the paper: 'the same model architectures as the "
           "original MAML authors').",),
    requires=NEEDS_MINI,
)

VINYALS2016_OMNIGLOT = Preset(
    title="Matching Networks on Omniglot",
    source="Vinyals et al. 2016, NeurIPS (arXiv:1606.04080)",
    compare={
        "algorithms": ["matchingnet"], "datasets": ["omniglot"],
        "dataset_options": OMNIGLOT_VINYALS, "ways": [5, 20], "shots": [1, 5], "queries": 15,
        "episodes": 1000, "budget": "episodes:40000", "checkpoint": "last",
    },
    published=_rows("matchingnet", FOUR_SETTINGS, ((98.1, None), (98.9, None), (93.8, None),
                                                   (98.5, None)),
                    "Vinyals et al. 2016, Table 1 (cosine, no fine-tuning, no FCE; as quoted "
                    "by Snell et al. 2017, Table 1)"),
    notes=("The paper gives no training length or interval; 40,000 episodes and 1000 test "
           "episodes as snell2017-omniglot.",
           "Split: 1,200 training and 423 test characters (Vinyals et al. section 4.1.1), in "
           "Snell et al.'s files of the split: train on trainval, test the last weights.",),
)

CHEN_TABLE = ("wyharveychen/CloserLookFewShot record/few_shot_exp_figures.xlsx, sheet backbone, "
              "Conv-4 (95% CI over 600 episodes, test.py)")

CHEN2019_MINIIMAGENET = Preset(
    title="Baseline and Baseline++ on mini-ImageNet (Conv-4)",
    source="Chen et al. 2019, ICLR (arXiv:1904.04232)",
    compare={
        "algorithms": ["baseline", "baseline-pp"], "datasets": ["mini-imagenet"], "ways": [5],
        "shots": [1, 5], "queries": 15, "episodes": 600,
        # 400 epochs of the 38,400 training images = 15.36M images (train.py: stop_epoch 400
        # for baseline and baseline++ on miniImagenet, either shot); an episode budget charges
        # ways x (shots + queries) images: 80 for 5w1s (192,000 episodes), 100 for 5w5s.
        "budget": "episodes:192000", "budgets": {"5s": "episodes:153600"}, "checkpoint": "last",
        "hparams": {"baseline": {"batch_size": 16}, "baseline-pp": {"batch_size": 16}},
    },
    published=(_rows("baseline", ("5w1s", "5w5s"), ((42.11, 0.71), (62.53, 0.69)), CHEN_TABLE)
               + _rows("baseline-pp", ("5w1s", "5w5s"), ((48.24, 0.75), (66.43, 0.63)),
                       CHEN_TABLE)),
    notes=("Chen et al. pre-train 400 epochs with batch 16 (Adam 1e-3) and test the last "
           "epoch; the budget counts images, so both settings see 400 epochs.",
           "Data augmentation during pre-training (every README command: --train_aug) is not "
           "done here."),
    requires=NEEDS_MINI,
)


@metabench.hookimpl
def register_presets(register: metabench.RegisterPreset) -> None:
    """The papers' protocols and published results (``metabench reproduce``), by algorithm."""
    # protonet
    register("snell2017-omniglot", SNELL2017_OMNIGLOT)
    register("snell2017-miniimagenet", SNELL2017_MINIIMAGENET)
    # maml
    register("finn2017-omniglot", FINN2017_OMNIGLOT)
    register("finn2017-miniimagenet", FINN2017_MINIIMAGENET)
    register("finn2017-sinusoid", FINN2017_SINUSOID)
    register("finn2017-navigation2d", FINN2017_NAVIGATION2D)
    register("finn2017-halfcheetah-vel", FINN2017_HALFCHEETAH_VEL)
    register("finn2017-halfcheetah-dir", FINN2017_HALFCHEETAH_DIR)
    # reptile
    register("nichol2018-omniglot", NICHOL2018_OMNIGLOT)
    register("nichol2018-miniimagenet", NICHOL2018_MINIIMAGENET)
    # anil
    register("raghu2020-omniglot", RAGHU2020_OMNIGLOT)
    register("raghu2020-miniimagenet", RAGHU2020_MINIIMAGENET)
    # metasgd
    register("li2017-miniimagenet", LI2017_MINIIMAGENET)
    # matchingnet
    register("vinyals2016-omniglot", VINYALS2016_OMNIGLOT)
    # baseline
    register("chen2019-miniimagenet", CHEN2019_MINIIMAGENET)
