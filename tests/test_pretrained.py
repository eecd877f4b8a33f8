"""The committed pretrained models are real, match their cards and load."""

import copy

import numpy as np
import pytest

from kerasvae import data, pretrained, protocol, zoo

NAMES = pretrained.list_pretrained()


@pytest.fixture(scope="module")
def test_sets():
    (_, _), (x_test, y_test) = data.load_fashion_mnist()
    x_binarized, y_binarized = protocol.binarized_splits()["test"]
    # Models trained under the binarized protocol are evaluated on its test images.
    return {"grey": (x_test[:2000], y_test[:2000]), "binarized": (x_binarized[:2000], y_binarized[:2000])}


@pytest.fixture
def test_set(test_sets, name):
    """(images, classes) of the test set `name` was evaluated on."""
    binarized = "protocol" in pretrained.pretrained_metrics(name)
    return test_sets["binarized" if binarized else "grey"]


def conditional(model):
    return model.num_classes is not None


def test_every_shipped_model_names_a_zoo_preset():
    assert NAMES, "no pretrained models found"
    for name in NAMES:
        assert pretrained.pretrained_metrics(name)["run_config"]["preset"] in zoo.PRESETS


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_reproduces_the_reported_test_loss(name, test_set):
    model = pretrained.load_pretrained_keras(name)
    reported = pretrained.pretrained_metrics(name)["test"]
    x, y = test_set
    # Keras's own evaluation path (test_step), batch by batch: 20 batches of
    # 100 of the 2,000 images give the figures' standard errors on this slice
    # (tests/test_pretrained_figures.py re-measures them image by image).
    batches = [
        model.test_on_batch(x[i : i + 100], y[i : i + 100] if conditional(model) else None, return_dict=True)
        for i in range(0, len(x), 100)
    ]
    for key in ("reconstruction_loss", "kl_loss"):
        values = np.array([b[key] for b in batches])
        stderr = values.std(ddof=1) / np.sqrt(len(values))
        # 4.5 standard errors: a false alarm below 1e-5 per figure.
        assert abs(values.mean() - reported[key]) < 4.5 * stderr, (key, values.mean(), reported[key], stderr)
    # A trained model, not an untrained one (which scores ~545 nats); a
    # beta-VAE gives up some ELBO for its beta, hence the margin.
    assert np.mean([b["reconstruction_loss"] + b["kl_loss"] for b in batches]) < 300


@pytest.mark.requires_tensorflow
@pytest.mark.parametrize("name", NAMES)
def test_savedmodel_matches_the_keras_file(name, test_set):
    import tensorflow as tf

    served = pretrained.load_pretrained(name)
    model = pretrained.load_pretrained_keras(name)
    x, y = test_set[0][:16], test_set[1][:16]
    if conditional(model):
        served_output = served.signatures["reconstruct"](x=tf.constant(x), label=tf.constant(y, tf.int64))
        expected = model.predict([x, y], verbose=0)
    else:
        served_output = served.signatures["reconstruct"](x=tf.constant(x))
        expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(served_output["reconstruction"], expected, atol=1e-5)


def test_model_cards_are_current():
    for name in NAMES:
        with open(f"{pretrained.savedmodels_dir()}/{name}/README.md") as f:
            assert f.read() == pretrained.model_card(name), (
                f"Model card of {name} is stale: run kerasvae.pretrained.write_model_card({name!r})"
            )


def test_unknown_names_and_versions_are_refused():
    with pytest.raises(ValueError, match="name='nope'"):
        pretrained.pretrained_path("nope")
    if NAMES:
        with pytest.raises(ValueError, match="Version 999"):
            pretrained.pretrained_path(NAMES[0], version=999)


@pytest.mark.parametrize(
    "epochs_run, best, limit, why",
    [
        (300, 300, 300, "stopped at its epoch limit (300) with the validation figure still improving"),
        (300, 280, 300, "stopped at its epoch limit (300); its best epoch was 280"),
    ],
)
def test_a_card_behind_its_row_says_why_and_what_more_epochs_cost(epochs_run, best, limit, why):
    config = {
        "epochs_run": epochs_run,
        "epochs": best,
        "max_epochs": limit,
        "patience": 50,
        "train_seconds": 36.0 * epochs_run,
        "hardware": "a test machine",
        "backend": "jax",
    }
    text = pretrained._what_would_close_the_gap(1.5, 0.75, config)
    assert "The gap is 2.0 standard errors" in text
    assert why in text
    assert "the published setup's rule is up to 2000 epochs, stopping after 50 without a better" in text
    # 36 s an epoch: 100 more epochs are one hour.
    assert "An epoch took 36 s here (a test machine, Keras on jax), so 100 more take 1.0 hours" in text
    assert f"--max-epochs {limit + 100}` continues this run" in text
    # Where the run recorded its epochs, their median is the cost: the
    # total also counts the run's pauses.
    paused = dict(config, train_seconds=10 * config["train_seconds"], median_epoch_seconds=72.0)
    assert "An epoch took 72 s here" in pretrained._what_would_close_the_gap(1.5, 0.75, paused)


def test_a_card_stopped_early_by_another_patience_does_not_call_it_the_published_rule():
    config = {
        "epochs_run": 120,
        "epochs": 110,
        "max_epochs": 2000,
        "train_seconds": 36.0 * 120,
        "hardware": "a test machine",
        "backend": "jax",
    }
    published = pretrained._what_would_close_the_gap(1.5, 0.75, dict(config, patience=50))
    assert "by the published setup's own rule (up to 2000 epochs, stopping after 50 without" in published
    assert "another seed is a new run of about 1.2 hours" in published
    other = pretrained._what_would_close_the_gap(1.5, 0.75, dict(config, patience=10))
    assert "Early stopping ended the run at epoch 120, 10 epochs after its best (110)" in other
    assert "where the published setup's rule is up to 2000 epochs, stopping after 50 without" in other
    assert "`--patience 50` would train on" in other
    assert "own rule" not in other and "another seed" not in other


def test_a_card_ahead_of_its_row_says_by_how_many_standard_errors():
    record = copy.deepcopy(pretrained.pretrained_metrics("hvae_mlp_binarized"))
    record["test"].update(nll_importance_sampled=226.72 - 0.38, nll_standard_error=0.76)
    text = pretrained._binarized_model_card("hvae_mlp_binarized", record)
    assert "226.34 +- 0.76, 0.38 nats better than the published figure." in text
    assert "The difference is 0.5 standard errors of the estimate." in text
    assert "The gap is" not in text and "--max-epochs" not in text


def test_a_card_stopped_early_says_more_epochs_would_not_help():
    config = {
        "epochs_run": 250,
        "epochs": 200,
        "max_epochs": 400,
        "patience": 50,
        "train_seconds": 36.0 * 250,
        "median_epoch_seconds": 36.0,
        "hardware": "a test machine",
        "backend": "jax",
    }
    text = pretrained._what_would_close_the_gap(1.5, 0.75, config)
    assert "The gap is 2.0 standard errors" in text
    assert "Early stopping ended the run at epoch 250, 50 epochs after its best (200)" in text
    assert "a larger --max-epochs would stop it again" in text and "--max-epochs 500" not in text
    # A new run costs the run's own epochs: 250 of 36 s are 2.5 hours.
    assert "a new run of about 2.5 hours here (a test machine, Keras on jax)" in text


def test_a_card_whose_networks_are_not_the_published_ones_says_so():
    record = copy.deepcopy(pretrained.pretrained_metrics("hvae_mlp_binarized"))
    text = pretrained._binarized_model_card("hvae_mlp_binarized", record)
    assert "lighter than the published" not in text  # the published HVAE's own networks
    record["run_config"]["preset"] = "hvae_conv"
    text = pretrained._binarized_model_card("hvae_mlp_binarized", record)
    assert "Published (two-level HVAE, VampPrior (conv), Norouzi et al. 2020, K = 5000): 224.67" in text
    assert "Its networks are lighter than the published convolutional HVAE's" in text
    assert "`hvae_gated_conv`" in text
