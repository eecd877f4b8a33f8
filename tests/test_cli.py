"""The main job end to end: train on real data, evaluate, export, rerun."""

import json
import os

import pytest

from kerasvae import callbacks_safety, cli, export

# The commands users run, with the steps they get: traced, not eager.
pytestmark = [pytest.mark.requires_tensorflow, pytest.mark.compiled_step]


def test_train_evaluates_exports_and_a_rerun_reuses_the_finished_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--preset", "mlp_fashion_mnist", "--epochs", "2", "--train-examples", "3000",
            "--nll-examples", "100", "--nll-samples", "10", "--output", out,
            "--no-figures"]  # the pictures are tested in test_cli_verbs.py
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "Fashion-MNIST: 3000 train, 10000 test images" in printed
    with open(os.path.join(out, "metrics.json")) as f:
        test = json.load(f)["test"]
    assert 200 < test["nll_importance_sampled"] <= test["negative_elbo"] + 1.0 < 400
    assert export.existing_versions(os.path.join(out, "savedmodel")) == [1]
    export.verify_saved_model(os.path.join(out, "savedmodel", "1"))

    assert cli.main(args) == 0  # finished: reloaded, not retrained, not re-exported
    printed = capsys.readouterr().out
    assert "Run already finished" in printed and "Epoch" not in printed
    assert export.existing_versions(os.path.join(out, "savedmodel")) == [1]


def test_train_resumes_from_the_last_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["train", "--train-examples", "1000", "--nll-examples", "50", "--nll-samples", "5",
            "--output", out, "--no-export", "--no-figures"]
    assert cli.main(base + ["--epochs", "1"]) == 0
    capsys.readouterr()
    assert cli.main(base + ["--epochs", "2"]) == 0  # a longer run picks up at epoch 1
    printed = capsys.readouterr().out
    assert "Resuming from epoch 1" in printed
    with open(os.path.join(out, "backup", callbacks_safety.METADATA_FILE)) as f:
        assert json.load(f)["epoch"] == 2
    with open(os.path.join(out, "history.csv")) as f:  # epoch 0 once, then epoch 1
        assert [row.split(",")[0] for row in f.read().split()[1:]] == ["0", "1"]
    assert cli.main(base + ["--epochs", "1", "--force"]) == 0  # from scratch: the backup goes
    assert "Resuming" not in capsys.readouterr().out
    with open(os.path.join(out, "backup", callbacks_safety.METADATA_FILE)) as f:
        assert json.load(f)["epoch"] == 1


def test_bad_arguments_and_missing_data_are_reported(tmp_path, capsys):
    assert cli.main(["train", "--preset", "nope", "--output", str(tmp_path)]) == 2
    assert "Received: 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "--data-dir", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--epochs", "0"])
