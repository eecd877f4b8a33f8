"""The committed pretrained models are real, match their cards and load."""

import numpy as np
import pytest

from kerasvae import data, pretrained, protocol, zoo

NAMES = pretrained.list_pretrained()


@pytest.fixture(scope="module")
def test_sets():
    (_, _), (x_test, _) = data.load_fashion_mnist()
    # Models trained under the binarized protocol are evaluated on its test images.
    return {"grey": x_test[:2000], "binarized": protocol.binarized_splits()["test"][0][:2000]}


@pytest.fixture
def test_images(test_sets, name):
    binarized = "protocol" in pretrained.pretrained_metrics(name)
    return test_sets["binarized" if binarized else "grey"]


def test_every_shipped_model_names_a_zoo_preset():
    assert NAMES, "no pretrained models found"
    for name in NAMES:
        assert pretrained.pretrained_metrics(name)["run_config"]["preset"] in zoo.PRESETS


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_reproduces_the_reported_test_loss(name, test_images):
    model = pretrained.load_pretrained_keras(name)
    reported = pretrained.pretrained_metrics(name)["test"]
    measured = model.evaluate(test_images, batch_size=500, verbose=0, return_dict=True)
    # 2,000 of the 10,000 test images: the subset mean moves by a few nats.
    assert abs(measured["reconstruction_loss"] - reported["reconstruction_loss"]) < 6.0
    assert abs(measured["kl_loss"] - reported["kl_loss"]) < 2.0
    # A trained model, not an untrained one (which scores ~545 nats).
    assert reported["negative_elbo"] < 260


@pytest.mark.requires_tensorflow
@pytest.mark.parametrize("name", NAMES)
def test_savedmodel_matches_the_keras_file(name, test_images):
    import tensorflow as tf

    served = pretrained.load_pretrained(name)
    model = pretrained.load_pretrained_keras(name)
    x = test_images[:16]
    np.testing.assert_allclose(
        served.signatures["reconstruct"](x=tf.constant(x))["reconstruction"],
        model.predict(x, verbose=0),
        atol=1e-5,
    )


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
