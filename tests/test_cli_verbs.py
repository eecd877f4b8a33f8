"""The command line's verbs: sample, plot, evaluate, export, presets, pretrained; start-up; errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kerasvae import cli, plotting, pretrained, zoo
from tests.helpers import tiny_vae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    tiny_vae(latent_dim=3).save(path)
    return path


def assert_png(path):
    with Image.open(path) as image:
        image.verify()


def run(args, capsys):
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# === sample ===
def test_sample_writes_a_png_grid_or_an_array(model_file, tmp_path, capsys):
    code, out, _ = run(["sample", model_file, "-o", str(tmp_path / "s.png"), "-n", "6"], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "s.png")
    assert_png(tmp_path / "s.png")
    code, out, _ = run(["sample", model_file, "-o", str(tmp_path / "s.npy"), "-n", "5",
                        "--seed", "3"], capsys)
    samples = np.load(tmp_path / "s.npy")
    assert code == 0 and samples.shape == (5, 28, 28, 1)
    assert 0.0 <= samples.min() and samples.max() <= 1.0
    run(["sample", model_file, "-o", str(tmp_path / "again.npy"), "-n", "5", "--seed", "3"], capsys)
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), samples)  # seeded


def test_sample_from_a_run_folder(model_file, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    os.link(model_file, folder / "model.keras")
    code, _, _ = run(["sample", str(folder), "-o", str(tmp_path / "s.npy"), "-n", "2"], capsys)
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (2, 28, 28, 1)


@pytest.mark.requires_tensorflow
def test_sample_and_plot_from_a_savedmodel_folder(model_file, tmp_path, capsys):
    code, out, _ = run(["export", model_file, str(tmp_path / "export")], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "export" / "1")
    for folder in (tmp_path / "export", tmp_path / "export" / "1"):  # base path or version
        code, _, err = run(["sample", str(folder), "-o", str(tmp_path / "s.png")], capsys)
        assert code == 0, err
        assert_png(tmp_path / "s.png")
    code, _, err = run(["plot", "traversals", str(tmp_path / "export"), "--examples", "50",
                        "-o", str(tmp_path / "t.png")], capsys)
    assert code == 0, err
    assert_png(tmp_path / "t.png")


def test_label_is_refused_for_an_unconditional_model(model_file, tmp_path, capsys):
    code, _, err = run(["sample", model_file, "--label", "3", "-o", str(tmp_path / "s.png")], capsys)
    assert code == 2
    assert "--label 3" in err and "is unconditional" in err and "not trained with class labels" in err
    assert not os.path.exists(tmp_path / "s.png")


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "{tmp}/missing.keras"], "no model file or folder at '{tmp}/missing.keras'"),
        (["sample", "no_such_model"], f"Pretrained models: {pretrained.list_pretrained()}"),
        (["sample", "{tmp}"], "holds no model: no model.keras, no saved_model.pb"),
        (["sample", "{model}", "-o", "{tmp}/s.jpg"], "must end in .png or .npy. Received: '{tmp}/s.jpg'"),
        (["sample", "{model}", "-o", "{model}/s.png"], "cannot write to the folder of the --output file"),
        (["plot", "latent", "{model}", "--data-dir", "{tmp}/nowhere", "-o", "{tmp}/l.png"],
         "Fashion-MNIST folder does not exist"),
        (["plot", "training_curves", "{tmp}"], "no history.csv beside"),
        (["plot", "training_curves", "{tmp}/h.csv"], "no history file at '{tmp}/h.csv'"),
        (["train", "--preset", "nope", "--output", "{tmp}/run"], f"{sorted(zoo.PRESETS)}"),
        (["train", "--output", "{model}/run"], "cannot write to the run folder '{model}/run'"),
        (["train", "--data-dir", "{tmp}/nowhere", "--output", "{tmp}/run"],
         "Fashion-MNIST folder does not exist. Received: path='{tmp}/nowhere'"),
    ],
)
def test_mistakes_say_what_is_missing(model_file, tmp_path, capsys, args, message):
    fill = {"tmp": str(tmp_path), "model": model_file}
    code, _, err = run([a.format(**fill) for a in args], capsys)
    assert code == 2
    assert message.format(**fill) in err


# === plot ===
@pytest.mark.parametrize("figure", [f for f in plotting.FIGURES if f != "training_curves"])
def test_plot_each_figure(model_file, tmp_path, capsys, figure):
    out_path = str(tmp_path / f"{figure}.png")
    code, out, err = run(["plot", figure, model_file, "--examples", "60", "-o", out_path], capsys)
    assert code == 0, err
    assert out.strip() == out_path
    assert_png(out_path)


def test_plot_all_and_training_curves(model_file, tmp_path, capsys):
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,val_loss\n0,300,290\n1,250,260\n")
    code, out, err = run(["plot", "all", model_file, "--examples", "60", "--history", str(history),
                          "-o", str(tmp_path / "figures")], capsys)
    assert code == 0, err
    for name in plotting.FIGURES:
        path = str(tmp_path / "figures" / f"{name}.png")
        assert path in out.splitlines()[plotting.FIGURES.index(name) + 1]
        assert_png(path)
    code, out, err = run(["plot", "training_curves", str(history), "-o", str(tmp_path / "c.png")],
                         capsys)
    assert code == 0, err
    assert_png(tmp_path / "c.png")


# === train ===
@pytest.mark.requires_tensorflow
def test_train_with_tensorboard_logs_scalars_and_image_grids(tmp_path, capsys):
    from tests.test_image_snapshots import image_summaries

    out = tmp_path / "run"
    code, printed, err = run([
        "train", "--epochs", "2", "--train-examples", "512", "--nll-examples", "10",
        "--nll-samples", "2", "--no-export", "--tensorboard", "--snapshot-every", "1",
        "--output", str(out),
    ], capsys)
    assert code == 0, err
    assert f"TensorBoard logs in {out / 'logs'}" in printed
    summaries = image_summaries(str(out / "logs" / "images"))
    assert {tag: [s for s, _, _ in v] for tag, v in summaries.items()} == {
        "reconstructions": [1, 2], "samples": [1, 2]}
    assert os.listdir(out / "logs" / "train") and os.listdir(out / "logs" / "validation")
    pictures = printed.split("Pictures:\n", 1)[1].split()
    assert [os.path.basename(p) for p in pictures] == [f"{f}.png" for f in plotting.FIGURES]
    for path in pictures:
        assert_png(path)


# === evaluate, export, presets, pretrained ===
def test_evaluate_prints_the_figures_and_writes_json(model_file, tmp_path, capsys):
    code, out, err = run(["evaluate", model_file, "--nll-samples", "3", "--nll-examples", "20",
                          "-o", str(tmp_path / "m.json")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["nll_examples"] == 20 and metrics["nll_num_samples"] == 3
    assert metrics["examples"] == 10000
    # An untrained 3-d model on grey levels: around 545 nats, the KL near 0.
    assert 400 < metrics["negative_elbo"] < 700
    assert abs(metrics["negative_elbo"] - metrics["reconstruction_loss"] - metrics["kl_loss"]) < 1e-3
    assert f"nll_importance_sampled   {metrics['nll_importance_sampled']:.4f}" in out


def test_presets_and_pretrained_lists(capsys):
    code, out, _ = run(["presets"], capsys)
    assert code == 0 and all(name in out for name in zoo.PRESETS)
    code, out, _ = run(["pretrained"], capsys)
    assert code == 0
    for name in pretrained.list_pretrained():
        test = pretrained.pretrained_metrics(name)["test"]
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert f"{test['negative_elbo']:.1f}" in line and f"{test['bits_per_dim']:.3f}" in line


def test_every_verb_has_help(capsys):
    for verb in cli.HANDLERS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([verb, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: kerasvae {verb}" in capsys.readouterr().out


def test_backend_cannot_change_in_a_running_process(capsys):
    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    code, _, err = run(["presets", "--backend", other], capsys)
    assert code == 2 and "the backend is fixed when Keras is first imported" in err


# === Start-up, in a fresh process ===
def command(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    env["PYTHONPATH"] = ROOT
    env.update(env_extra or {})
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.requires_tensorflow
def test_tensorflow_start_up_chatter_is_hidden_unless_verbose():
    # What TensorFlow prints on this machine when imported plainly: the baseline.
    plain = command([sys.executable, "-c", "import tensorflow"]).stderr
    quiet = command([sys.executable, "-m", "kerasvae", "presets"])
    assert quiet.returncode == 0 and "mlp_fashion_mnist" in quiet.stdout
    assert quiet.stderr == ""
    verbose = command([sys.executable, "-m", "kerasvae", "presets", "--verbose"])
    for line in ("cuda drivers", "cpu_feature_guard"):
        if line in plain:  # the line exists on this machine: --verbose shows it
            assert line in verbose.stderr


# Not TF-only: the subprocesses pick their backends themselves, so this runs once per suite.
@pytest.mark.requires_tensorflow
def test_the_console_script_is_quiet_and_picks_the_backend(tmp_path):
    # The script pip writes for `kerasvae`, run from this checkout; it reports the backend after.
    script = tmp_path / "kerasvae"
    script.write_text(
        "import sys\nfrom kerasvae.cli import main\ncode = main()\nimport keras\n"
        "print('Keras backend:', keras.backend.backend())\nsys.exit(code)\n"
    )
    for backend in ("jax", "tensorflow"):
        result = command([sys.executable, str(script), "--backend", backend, "presets"])
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert f"Keras backend: {backend}" in result.stdout


# Not TF-only: the subprocess is on JAX whatever this process runs, so this runs once per suite.
def test_train_defaults_to_the_fastest_backend_of_its_preset():
    from kerasvae import _startup

    assert set(_startup.FASTEST_TRAINING_BACKEND) <= set(zoo.PRESETS)
    assert set(_startup.FASTEST_TRAINING_BACKEND.values()) <= set(_startup.BACKENDS)
    assert _startup.TRAIN_PRESET == cli._parser().parse_args(["train"]).preset
    for argv, expected in (
        (["train"], "jax"),  # the default preset, a dense VAE
        (["train", "--preset", "vampprior_mlp"], "jax"),
        (["--verbose", "train", "--preset=hvae_mlp"], "jax"),
        (["train", "--preset", "conv_fashion_mnist"], "tensorflow"),  # convolutions
        (["train", "--preset", "iwae_dreg_mlp"], "tensorflow"),  # not measured
        (["train", "--backend", "tensorflow"], None),  # asked for: kept
        (["--backend", "tensorflow", "train"], None),
        (["sample", "train"], None),  # only the train verb
    ):
        assert _startup.default_backend(argv, environ={}) == expected, argv
    assert _startup.default_backend(["train"], environ={"KERAS_BACKEND": "tensorflow"}) is None
    for argv, expected in (
        (["presets", "--backend", "jax", "--verbose"], ("jax", True)),
        (["--backend=jax", "presets"], ("jax", False)),
        (["presets", "--", "--backend", "jax", "--verbose"], (None, False)),  # after --: not options
    ):
        assert _startup.read_options(argv) == expected, argv


def test_train_stays_on_tensorflow_without_jax_installed(monkeypatch):
    import importlib.util

    from kerasvae import _startup

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    assert _startup.default_backend(["train"], environ={}) == "tensorflow"


@pytest.mark.requires_tensorflow
def test_train_from_the_command_line_on_jax(tmp_path):
    """No --backend and no KERAS_BACKEND: the default preset trains on JAX, its
    fastest backend here, and the SavedModel is exported from a TF process."""
    out = tmp_path / "run"
    result = command([
        sys.executable, "-m", "kerasvae", "train", "--epochs", "1",
        "--train-examples", "256", "--nll-examples", "10", "--nll-samples", "2",
        "--output", str(out),
    ])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "on jax" in result.stdout
    assert "the backend that trains mlp_fashion_mnist fastest here" in result.stdout
    version = out / "savedmodel" / "1"
    assert f"SavedModel written to {version}" in result.stdout
    assert (version / "saved_model.pb").is_file()
    # Not a terminal: one line per epoch, no progress bar redraws.
    assert "\r" not in result.stdout and "\x08" not in result.stdout
    pictures = result.stdout.split("Pictures:\n", 1)[1].split()
    assert pictures and all(os.path.isfile(p) for p in pictures if p.endswith(".png"))
    assert os.path.join(str(out), "training_curves.png") in pictures
