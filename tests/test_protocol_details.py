"""Protocol details are recorded with each cell and shown in the leaderboard."""

from __future__ import annotations

from preset_plugin import preset_plugin  # noqa: F401 (fixture)

import metabench


def test_transductive_and_not_are_recorded_and_shown(tmp_path, preset_plugin):  # noqa: F811
    metabench.compare(
        algorithms=["maml", "maml-nt"], variants={"maml-nt": "maml"}, datasets=["micro"],
        backbone="tinybn", shots=[1], queries=5, episodes=10, budget="steps:3",
        val_episodes=3, val_points=1, hparams=["maml-nt.transductive=false"],
        out=str(tmp_path), progress=False)
    cells = metabench.load_cells(tmp_path).set_index("algorithm")
    assert cells.loc["maml", "protocol"]["batch_norm"] == "transductive"
    assert cells.loc["maml-nt", "protocol"]["batch_norm"] == "non-transductive"
    assert cells.loc["maml-nt", "hparams"]["transductive"] is False
    episodes = metabench.load_results(tmp_path).pivot(index="episode", columns="algorithm",
                                                      values="loss")
    assert not (episodes["maml"] == episodes["maml-nt"]).all()  # same weights, other statistics
    table = metabench.leaderboard(tmp_path).set_index("algorithm")
    assert table.loc["maml-nt", "protocol"] == "batch norm: non-transductive"
    assert table.loc["maml", "protocol"] == "batch norm: transductive"


def test_the_training_spec_is_recorded_where_it_differs(tmp_path, preset_plugin):  # noqa: F811
    metabench.compare(
        algorithms=["protonet"], datasets=["micro"], backbone="flat", shots=[1], queries=5,
        episodes=8, budget="steps:3", val_episodes=3, val_points=1,
        hparams={"protonet": {"train_ways": 7, "train_queries": 2}}, out=str(tmp_path),
        progress=False)
    (protocol,) = metabench.load_cells(tmp_path)["protocol"]
    assert protocol["train"] == "7w1s q2" and protocol["checkpoint"] == "best on validation"
    (text,) = metabench.leaderboard(tmp_path)["protocol"]
    assert "train: 7w1s q2" in text and "checkpoint" not in text
