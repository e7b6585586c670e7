"""Values typed once, where they enter: one fingerprint for every spelling of a value, the
fingerprints of runs stored by release a520acd unchanged, and wrong types as one-line
errors before anything runs."""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_compare_plugin import compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench.budget import Budget
from metabench.cli import main
from metabench.config import make_config
from metabench.errors import MetabenchError
from metabench.reproduction import preset_config
from metabench.session import configure
from metabench.store import Store
from metabench.trials import make_settings
from metabench.tuning import fingerprint as tuning_fingerprint
from metabench.typed import typed_config
from metabench.values import convert, exact

# Representative configurations and the fingerprints release a520acd gives them (computed
# with that release's code: `make_config(options).fingerprint()`): runs it stored resume.
OLD_CONFIGS = {
    "defaults": ({}, "3cef4d34e9398a34"),
    "toml-hparams": ({"algorithms": "maml,protonet", "shots": [1], "seeds": [0, 1, 2],
                      "budget": "episodes:2000",
                      "hparams": {"maml": {"inner_lr": 0.1, "train_steps": 3, "first_order": True},
                                  "protonet": {"lr": 0.001}}}, "c731ade020c347ed"),
    "toml-int-for-float": ({"algorithms": "reptile", "hparams": {"reptile": {"outer_lr": 1}}},
                           "cc28d20f15c9e935"),
    "text-hparam": ({"algorithms": "reptile", "hparams": ["reptile.inner_optimizer=adam"]},
                    "c1f51f3d570dbdf1"),
    "dataset-options": ({"datasets": "omniglot", "budget": "steps:100",
                         "dataset_options": {"omniglot": {"rotations": True}}},
                        "e0ad85622ed76413"),
    "budgets": ({"algorithms": "maml", "ways": [5, 20], "budget": "steps:1000",
                 "budgets": {"20w": "steps:2000"}, "hparams": {"maml@20w": {"inner_lr": 0.4}}},
                "4215ce02d731d9a9"),
    "any-shot": ({"algorithms": "protonet", "ways": "any", "shots": "any",
                  "sampler_options": ["max_ways=20", "min_log_weight=-0.5"]},
                 "934f38f307b575c3"),
    "variants": ({"algorithms": "maml,maml-fo", "variants": {"maml-fo": "maml"},
                  "hparams": {"maml-fo": {"first_order": True}}, "budget": "time:0.5s"},
                 "62069c04d2883e7e"),
    "protocol": ({"datasets": "glyphs", "test_dataset": "glyphs", "checkpoint": "last",
                  "curve_steps": 2, "val_points": 2, "val_episodes": 10, "queries": 5,
                  "episodes": 50, "cpus_per_cell": 2, "backbone": "conv4", "scale": 0.5,
                  "device": "cpu", "out": "elsewhere", "max_retries": 0}, "32d611a32a9e4b27"),
}
OLD_PRESETS = {("snell2017-omniglot", 0.05): "ea5a1eeb817194c4",
               ("finn2017-sinusoid", 1.0): "58f51a5a529d0b3a",
               ("raghu2020-miniimagenet", 0.1): "101602127ac3ec0b"}
OLD_TUNING = ({"algorithms": "fomaml", "budget": "episodes:30"},
              {"trials": 4, "trial_budget": "episodes:10",
               "space": ["fomaml.inner_lr=log:0.01:0.5"]}, "318d8093f632c31e")

pytestmark = pytest.mark.usefixtures("compare_plugin")

TINY = {"datasets": "micro", "backbone": "flat", "shots": [1], "episodes": 4,
        "budget": "episodes:2", "val_episodes": 2, "val_points": 1, "progress": False,
        "algorithms": ["protonet"]}


@pytest.mark.parametrize("name", list(OLD_CONFIGS))
def test_fingerprints_of_stored_runs_are_unchanged(name):
    options, expected = OLD_CONFIGS[name]
    assert typed_config(make_config(options)).fingerprint() == expected


@pytest.mark.parametrize(("preset", "scale"), list(OLD_PRESETS))
def test_fingerprints_of_stored_preset_runs_are_unchanged(preset, scale):
    assert typed_config(preset_config(preset, scale)).fingerprint() == OLD_PRESETS[(preset, scale)]


def test_fingerprints_of_stored_tunings_are_unchanged():
    options, settings, expected = OLD_TUNING
    assert tuning_fingerprint(typed_config(make_config(options)),
                              make_settings(settings)) == expected


def test_three_spellings_give_one_fingerprint(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('algorithms = "maml"\n[hparams.maml]\ninner_lr = 0.1\n')
    configs = [typed_config(configure({"algorithms": "maml", "hparams": [f"maml.inner_lr={text}"]}))
               for text in ("0.1", ".1", "1e-1", " 0.10 ")]
    configs.append(typed_config(configure({}, toml)))
    configs.append(typed_config(configure({"algorithms": "maml",
                                           "hparams": {"maml": {"inner_lr": 0.1}}})))
    assert {config.fingerprint() for config in configs} == {configs[0].fingerprint()}
    assert all(config.hparams == {"maml": {"inner_lr": 0.1}} for config in configs)


def test_other_typed_values_have_one_spelling():
    flags = typed_config(make_config({
        "algorithms": "maml", "hparams": ["maml.first_order=yes", "maml.train_steps=+3"],
        "datasets": "omniglot", "dataset_options": ["omniglot.rotations=on"],
        "budget": "time:5m"}))
    toml = typed_config(make_config({
        "algorithms": "maml", "hparams": {"maml": {"first_order": True, "train_steps": 3}},
        "datasets": "omniglot", "dataset_options": {"omniglot": {"rotations": True}},
        "budget": "time:300s"}))
    assert flags.fingerprint() == toml.fingerprint()
    assert flags.budget == Budget("time", 300.0) and flags.to_dict()["budget"] == "time:300s"


def test_the_converter_reads_text_as_toml_does():
    assert convert("x", ".1", float) == 0.1 and convert("x", "5", float) == 5
    assert isinstance(convert("x", "5", float), int) and exact("x", "5", float) == 5.0
    assert convert("x", "off", bool) is False and convert("x", "12", int | None) == 12
    with pytest.raises(MetabenchError, match=r"x='2.5' is not a valid int"):
        convert("x", "2.5", int)
    with pytest.raises(MetabenchError, match="not a finite number"):
        convert("x", "nan", float)


def test_resume_by_options_finds_the_run_whatever_the_spelling(tmp_path):
    first = metabench.compare(out=tmp_path, hparams=["protonet.lr=0.001"], **TINY)
    toml = tmp_path / "run.toml"
    toml.write_text("[hparams.protonet]\nlr = 0.001\n")
    for spelling in ({"hparams": ["protonet.lr=.001"]}, {"hparams": ["protonet.lr=1e-3"]},
                     {"config": toml}):
        again = metabench.compare(out=tmp_path, resume=True, **TINY, **spelling)
        assert again.attrs["run"] == first.attrs["run"]
    with Store.open_existing(tmp_path) as store:
        assert len(store.runs()) == 1


def test_a_run_stored_with_text_values_before_typing_resumes(tmp_path):
    first = metabench.compare(out=tmp_path, hparams=["protonet.lr=0.001"], **TINY)
    run = first.attrs["run"]
    with Store.open_existing(tmp_path) as store:
        config = store.run(run).config
    # As release a520acd stored it: the --set value as text, its fingerprint of that text.
    config["hparams"] = {"protonet": {"lr": ".001"}}
    old_fingerprint = make_config(config).fingerprint()
    with sqlite3.connect(tmp_path / "metabench.sqlite") as db:
        db.execute("UPDATE runs SET config = ?, fingerprint = ? WHERE id = ?",
                   (json.dumps(config), old_fingerprint, run))
    db.close()
    again = metabench.compare(out=tmp_path, resume=True, hparams={"protonet": {"lr": 0.001}},
                              **TINY)
    assert again.attrs["run"] == run
    by_id = metabench.compare(out=tmp_path, resume=run, progress=False)
    assert by_id.attrs["run"] == run


@pytest.mark.parametrize(("flags", "message"), [
    (["--set", "protonet.lr=fast"], "error: protonet.lr='fast' is not a valid float"),
    (["--set", "protonet.meta_batch_size=2.5"],
     "error: protonet.meta_batch_size='2.5' is not a valid int"),
    (["--dataset-option", "omniglot.rotations=maybe"],
     "error: data set 'omniglot' option rotations='maybe' is not a valid bool"),
])
def test_a_value_of_the_wrong_type_is_a_one_line_error_before_anything_runs(
        tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "-a", "protonet", "-d", "micro", "--out", str(tmp_path),
              "--no-progress", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "metabench.sqlite").exists()
