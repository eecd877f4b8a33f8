"""Command line: `kerasvae <verb>` or `python -m kerasvae <verb>`; `--help` on each.

Verbs:
    train                 train a zoo preset on Fashion-MNIST, evaluate, export, draw
    sample MODEL          draw samples into a PNG or a .npy file
    plot FIGURE MODEL     draw one figure (or `all` of them) of a model
    evaluate MODEL        ELBO parts, importance-sampled NLL, active units
    export MODEL BASE     write BASE/<version>/ for TF Serving
    presets               list the zoo
    pretrained            list the pretrained models and their test-set figures
    serving-config        write a TF Serving models.config

MODEL is a `.keras` file, a SavedModel folder (a version folder, or a base
folder whose newest version is used), a run folder holding `model.keras`, or
the name of a pretrained model. Every verb takes `--backend jax|tensorflow`
(set before Keras is imported) and `--verbose` (let TensorFlow's start-up
logging through). A `.keras` file that carries code (a Lambda layer) is
refused unless `--unsafe` is given.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from kerasvae import _startup

IMAGE_SUFFIXES = (".png",)
ARRAY_SUFFIXES = (".npy",)


class CommandError(Exception):
    """A problem with what the user asked for; printed as `error: ...`, exit 2."""


# === Arguments ===
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _common(parser, suppress=False):
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--backend", choices=_startup.BACKENDS, default=default,
        help="Keras backend, set before Keras is imported (default: $KERAS_BACKEND or tensorflow)",
    )
    parser.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS if suppress else False,
        help="show TensorFlow's start-up and C++ logging",
    )


def _model_argument(parser):
    parser.add_argument(
        "model",
        help="a .keras file, a SavedModel folder, a run folder or a pretrained model's name",
    )
    parser.add_argument(
        "--unsafe", action="store_true",
        help="load a .keras file that carries Python code (a Lambda layer); only files you trust",
    )


def _parser():
    from kerasvae import plotting

    parser = argparse.ArgumentParser(
        prog="kerasvae", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]),
    )
    _common(parser, suppress=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, help, description=None):
        sub = verbs.add_parser(name, help=help, description=description or help)
        _common(sub)
        return sub

    train = verb(
        "train", "train a zoo preset on Fashion-MNIST, evaluate, export, draw the pictures",
        "Trains a zoo preset on Fashion-MNIST (resumable: rerun to continue; a finished run "
        "is reloaded, not retrained), evaluates it on the test set, exports a SavedModel and "
        "writes the pictures into the run folder.",
    )
    train.add_argument("--preset", default="mlp_fashion_mnist", help="zoo preset (see `presets`)")
    train.add_argument("--epochs", type=_positive_int, help="defaults to the preset's")
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--train-examples", type=_positive_int, help="use the first N training images")
    train.add_argument("--output", help="run folder (default runs/<preset>)")
    train.add_argument("--export-dir", help="SavedModel base path (default <output>/savedmodel)")
    train.add_argument("--no-export", action="store_true")
    train.add_argument("--no-figures", action="store_true", help="do not draw the pictures")
    train.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--nll-samples", type=_positive_int, default=100)
    train.add_argument("--nll-examples", type=_positive_int, default=1000)
    train.add_argument(
        "--tensorboard", nargs="?", const="", default=None, metavar="LOG_DIR",
        help="log scalars and image grids for TensorBoard (default folder <output>/logs)",
    )
    train.add_argument(
        "--snapshot-every", type=_positive_int, default=5, metavar="N",
        help="with --tensorboard: reconstructions and samples every N epochs (default 5)",
    )
    train.add_argument("--force", action="store_true", help="retrain from scratch even if the run finished (deletes its backup)")

    sample = verb("sample", "draw samples from a model into a PNG grid or a .npy array")
    _model_argument(sample)
    sample.add_argument("--output", "-o", default="samples.png",
                        help="a .png (a grid) or .npy (the array) file (default samples.png)")
    sample.add_argument("--num-samples", "-n", type=_positive_int, default=32)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--label", type=int, help="the class to draw (conditional models only)")
    sample.add_argument("--ncols", type=_positive_int, default=8, help="images per row of a PNG")

    plot = verb("plot", "draw a figure of a model (or all of them) as PNG")
    plot.add_argument("figure", choices=list(plotting.FIGURES) + ["all"], metavar="FIGURE",
                      help=f"one of {', '.join(plotting.FIGURES)}, or all")
    _model_argument(plot)
    plot.add_argument("--output", "-o",
                      help="the PNG (default <figure>.png); for `all`, a folder (default figures)")
    plot.add_argument("--history", help="history CSV for training_curves (default: beside the "
                                        "model, or MODEL itself when it is a CSV file)")
    plot.add_argument("--examples", type=_positive_int, default=2000,
                      help="test images used by the latent figures (default 2000)")
    plot.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    plot.add_argument("--label", type=int, help="class to draw (conditional models: manifold)")
    plot.add_argument("--seed", type=int, default=0)

    evaluate = verb("evaluate", "evaluate a model on the Fashion-MNIST test set")
    _model_argument(evaluate)
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--nll-samples", type=_positive_int, default=100,
                          help="importance samples K per image (default 100)")
    evaluate.add_argument("--nll-examples", type=_positive_int, default=1000,
                          help="test images for the NLL estimate (default 1000)")
    evaluate.add_argument("--output", "-o", help="also write the figures to this JSON file")

    export = verb("export", "export a model as a versioned SavedModel for TF Serving")
    _model_argument(export)
    export.add_argument("base_path")
    export.add_argument("--version", type=_positive_int)
    export.add_argument("--overwrite", action="store_true")

    verb("presets", "list the model zoo")
    verb("pretrained", "list the pretrained models and their test-set figures")

    config = verb("serving-config", "write a TF Serving models.config")
    config.add_argument("models", nargs="+", metavar="NAME=BASE_PATH")
    config.add_argument("--output", default="models.config")
    config.add_argument("--base-path-prefix", help="rewrite base paths as PREFIX/NAME (e.g. /models)")
    return parser


# === Helpers ===
def _interactive():
    return sys.stdout.isatty()


def _progress_verbose():
    """Keras's `verbose`: a progress bar in a terminal, one line per epoch otherwise."""
    return 1 if _interactive() else 2


def _writable_folder(folder, what="output folder"):
    """Makes `folder` and checks that a file can be written in it."""
    folder = os.path.abspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise CommandError(f"cannot write to the {what} {folder!r}: {e.strerror or e}") from None
    return folder


def _output_file(path, suffixes, what="output"):
    path = os.fspath(path)
    if not path.lower().endswith(suffixes):
        raise CommandError(
            f"the {what} must end in {' or '.join(suffixes)}. Received: {path!r}"
        )
    _writable_folder(os.path.dirname(os.path.abspath(path)), f"folder of the {what}")
    return path


class LoadedModel:
    """A model named on the command line: Keras, or a SavedModel loaded with TF."""

    def __init__(self, model, kind, path, num_classes=None):
        self.model = model
        self.kind = kind  # "keras" or "savedmodel"
        self.path = path
        self.num_classes = getattr(model, "num_classes", None) if kind == "keras" else num_classes

    def require_keras(self, verb):
        if self.kind != "keras":
            raise CommandError(
                f"{verb} needs a Keras model (a .keras file, a run folder or a pretrained name). "
                f"Received the SavedModel {self.path!r}."
            )
        return self.model


def _savedmodel_version(folder):
    from kerasvae.export import existing_versions

    if os.path.isfile(os.path.join(folder, "saved_model.pb")):
        return folder
    versions = existing_versions(folder)
    if versions:
        return os.path.join(folder, str(versions[-1]))
    return None


def _load_model(spec, unsafe=False):
    """Resolves MODEL: a file, a folder, or a pretrained name (see the module docstring)."""
    from kerasvae import pretrained

    path = os.fspath(spec)
    if os.path.isfile(path):
        return LoadedModel(pretrained.load_keras_model(path, allow_unsafe=unsafe), "keras", path)
    if os.path.isdir(path):
        keras_file = os.path.join(path, "model.keras")
        version = _savedmodel_version(path)
        if version is not None and not os.path.isfile(keras_file):
            return _load_savedmodel(version)
        if os.path.isfile(keras_file):
            return LoadedModel(
                pretrained.load_keras_model(keras_file, allow_unsafe=unsafe), "keras", keras_file
            )
        raise CommandError(
            f"the folder {path!r} holds no model: no model.keras, no saved_model.pb and no "
            "numbered SavedModel version folder."
        )
    names = pretrained.list_pretrained()
    if path in names:
        model = pretrained.load_pretrained_keras(path, allow_unsafe=unsafe)
        return LoadedModel(model, "keras", f"{path} (pretrained)")
    raise CommandError(
        f"no model file or folder at {path!r}, and it is not a pretrained model name. "
        f"Pretrained models: {names}"
    )


def _load_savedmodel(path):
    from kerasvae import export

    loaded = export.verify_saved_model(path)  # clear errors for a damaged or foreign folder
    try:
        num_classes = export.load_metadata(path).get("num_classes")
    except (OSError, ValueError):
        num_classes = None
    return LoadedModel(loaded, "savedmodel", path, num_classes=num_classes)


def _check_label(loaded, label):
    """The `--label` value, refused for an unconditional model."""
    if label is None:
        return None
    if loaded.num_classes is None:
        from kerasvae.plotting import ModelView

        if not ModelView(loaded.model).conditional:
            raise CommandError(
                f"--label {label}: the model {loaded.path} is unconditional (it was not trained "
                "with class labels), so it cannot draw a chosen class. Drop --label, or use a "
                "conditional model."
            )
    elif not 0 <= label < loaded.num_classes:
        raise CommandError(
            f"--label must lie in [0, {loaded.num_classes - 1}] for this model. Received: {label}"
        )
    return label


def _print_metrics(metrics):
    for key, value in metrics.items():
        print(f"  {key:24s} {value:.4f}" if isinstance(value, float) else f"  {key:24s} {value}")


def _print_figures(written, skipped):
    print("Pictures:")
    for path in written.values():
        print(f"  {path}")
    for name, reason in skipped.items():
        print(f"  ({name} not drawn: {reason})")


# === Verbs ===
def cmd_presets(args):
    from kerasvae import zoo

    print(f"{'preset':28s} {'family':17s} {'network':10s} {'latent':>6s}  description")
    for name in zoo.list_presets():
        preset = zoo.get_preset(name)
        print(f"{name:28s} {preset.family:17s} {preset.network:10s} {preset.latent_dim:6d}  "
              f"{preset.description}")
        print(f"{'':28s} reference: {preset.reference}")
    return 0


def cmd_pretrained(args):
    from kerasvae import pretrained

    names = pretrained.list_pretrained()
    if not names:
        print(f"No pretrained models in {pretrained.savedmodels_dir()!r}.")
        return 0
    print(f"Pretrained models in {pretrained.savedmodels_dir()} (test set, nats per image):")
    header = f"{'name':28s} {'-ELBO':>8s} {'NLL':>8s} {'K':>4s} {'bits/dim':>9s} {'active':>7s}  epochs"
    print(header)
    for name in names:
        record = pretrained.pretrained_metrics(name)
        test, config = record["test"], record["run_config"]
        active = f"{test['active_units']}/{test['latent_dim']}"
        print(
            f"{name:28s} {test['negative_elbo']:8.1f} {test['nll_importance_sampled']:8.1f} "
            f"{test['nll_num_samples']:4d} {test['bits_per_dim']:9.3f} {active:>7s}  "
            f"{config['epochs']}"
        )
    return 0


def _fit_callbacks(args, output, backup, x_test, y_test, model):
    import keras

    from kerasvae.callbacks import ImageSnapshots
    from kerasvae.callbacks_safety import StopOnNonFinite

    callbacks = [
        backup,
        StopOnNonFinite(),
        keras.callbacks.CSVLogger(os.path.join(output, "history.csv"), append=True),
    ]
    if args.tensorboard is not None:
        log_dir = args.tensorboard or os.path.join(output, "logs")
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir))
        callbacks.append(
            ImageSnapshots(
                os.path.join(output, "snapshots"),
                every=args.snapshot_every,
                images=x_test[:10],
                labels=y_test[:10] if getattr(model, "num_classes", None) else None,
                log_dir=log_dir,
                seed=args.seed,
            )
        )
        print(f"TensorBoard logs in {log_dir} (tensorboard --logdir {log_dir})")
    return callbacks


def cmd_train(args):
    import keras
    import numpy as np

    from kerasvae import callbacks_safety, data, evaluation, plotting, pretrained, zoo
    from kerasvae.callbacks import atomic_save_model
    from kerasvae.io_utils import atomic_write_text

    preset = zoo.get_preset(args.preset)
    epochs = args.epochs or preset.epochs
    batch_size = args.batch_size or preset.batch_size
    learning_rate = args.learning_rate or preset.learning_rate
    output = _writable_folder(args.output or os.path.join("runs", args.preset), "run folder")
    model_path = os.path.join(output, "model.keras")
    metrics_path = os.path.join(output, "metrics.json")
    run_config = {
        "preset": args.preset, "epochs": epochs, "batch_size": batch_size,
        "learning_rate": learning_rate, "train_examples": args.train_examples, "seed": args.seed,
    }

    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(args.data_dir)
    if args.train_examples:
        x_train, y_train = x_train[: args.train_examples], y_train[: args.train_examples]
    print(f"Fashion-MNIST: {len(x_train)} train, {len(x_test)} test images")
    print(f"Keras {keras.__version__} on {keras.backend.backend()}")
    if _startup.chosen_backend == keras.backend.backend():
        print(
            f"({keras.backend.backend()}: the backend that trains {args.preset} fastest here; "
            "--backend or KERAS_BACKEND picks another)"
        )

    finished = None
    if os.path.isfile(model_path) and os.path.isfile(metrics_path) and not args.force:
        with open(metrics_path) as f:
            finished = json.load(f)
    if finished and finished.get("run_config") == run_config:
        print(f"Run already finished ({model_path}); pass --force to retrain.")
        model = pretrained.load_keras_model(model_path)
        metrics = finished["test"]
    else:
        finished = None
        keras.utils.set_random_seed(args.seed)
        # Kept after `fit` ends, so that a rerun with more --epochs continues it.
        backup_dir = os.path.join(output, "backup")
        if args.force and os.path.isdir(backup_dir):
            shutil.rmtree(backup_dir)
        backup = callbacks_safety.BackupAndRestore(backup_dir, delete_checkpoint=False)
        model = zoo.build(args.preset, seed=args.seed)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        initial_epoch = backup.backed_up_epochs()
        if initial_epoch:
            print(f"Resuming from epoch {initial_epoch} ({backup.backup_dir})")
        conditional = getattr(model, "num_classes", None) is not None
        train_ds = data.make_dataset(
            x_train, batch_size, shuffle=True, seed=args.seed,
            labels=y_train if conditional else None,
        )
        test_ds = data.make_dataset(x_test, 1000, shuffle=False,
                                    labels=y_test if conditional else None)
        start = time.time()
        if initial_epoch < epochs:
            model.fit(
                train_ds,
                epochs=epochs,
                validation_data=test_ds,
                callbacks=_fit_callbacks(args, output, backup, x_test, y_test, model),
                shuffle=False,  # the dataset reshuffles itself each epoch
                verbose=_progress_verbose(),
            )
        train_seconds = time.time() - start
        atomic_save_model(model, model_path)
        metrics = evaluation.evaluate_vae(
            model, x_test, labels=y_test if conditional else None,
            num_importance_samples=args.nll_samples, nll_examples=args.nll_examples,
        )
        metrics["train_seconds_this_session"] = round(train_seconds, 1)
        atomic_write_text(
            metrics_path, json.dumps({"run_config": run_config, "test": metrics}, indent=2)
        )
    print(f"Test set ({args.preset}):")
    _print_metrics(metrics)

    if not args.no_export:
        base = args.export_dir or os.path.join(output, "savedmodel")
        if keras.backend.backend() != "tensorflow":
            _export_on_tensorflow(model_path, base, skip_existing=bool(finished))
        else:
            from kerasvae import export

            versions = export.existing_versions(base)
            if versions and finished:
                print(f"SavedModel already exported: {os.path.join(base, str(versions[-1]))}")
            else:
                print(f"SavedModel written to {export.export_saved_model(model, base)}")
    num_classes = getattr(model, "num_classes", None)
    sample_labels = None if num_classes is None else np.arange(16) % num_classes
    np.save(
        os.path.join(output, "samples.npy"),
        plotting.ModelView(model).sample(16, seed=args.seed, labels=sample_labels),
    )
    if not args.no_figures:
        history = os.path.join(output, "history.csv")
        written, skipped = plotting.write_figures(
            model, output, x_test[:2000], y_test[:2000],
            history=history if os.path.isfile(history) else None,
            class_names=data.CLASS_NAMES, seed=args.seed,
        )
        _print_figures(written, skipped)
    return 0


def _export_on_tensorflow(model_path, base, skip_existing):
    """Exports `model_path` from a TensorFlow process: a SavedModel is a
    TensorFlow graph, and this process's Keras runs on another backend."""
    import subprocess

    from kerasvae import export

    versions = export.existing_versions(base)
    if versions and skip_existing:
        print(f"SavedModel already exported: {os.path.join(base, str(versions[-1]))}")
        return
    command = [sys.executable, "-m", "kerasvae", "export", "--backend", "tensorflow", model_path, base]
    print(f"Exporting from a TensorFlow process (export needs TensorFlow): {' '.join(command[1:])}")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandError(
            f"the export failed (exit {result.returncode}); the trained model is kept in "
            f"{model_path}. Its error: {result.stderr.strip() or result.stdout.strip()}"
        )
    print(f"SavedModel written to {result.stdout.strip().splitlines()[-1]}")


def cmd_sample(args):
    import numpy as np

    from kerasvae import plotting
    from kerasvae.io_utils import atomic_open

    output = _output_file(args.output, IMAGE_SUFFIXES + ARRAY_SUFFIXES, "--output file")
    loaded = _load_model(args.model, unsafe=args.unsafe)
    label = _check_label(loaded, args.label)
    view = plotting.ModelView(loaded.model, num_classes=loaded.num_classes)
    labels = None
    if view.conditional:
        if label is not None:
            labels = np.full((args.num_samples,), label)
        elif output.lower().endswith(IMAGE_SUFFIXES):
            if view.num_classes is None:
                raise CommandError(
                    "this conditional SavedModel does not record its number of classes: "
                    "pass --label."
                )
            plotting.plot_samples(view, output, ncols=args.ncols, seed=args.seed,
                                  class_names=_class_names(view.num_classes))
            print(output)
            return 0
        else:
            if view.num_classes is None:
                raise CommandError("this conditional SavedModel needs --label.")
            labels = np.arange(args.num_samples) % view.num_classes
            print(f"Labels cycle through the {view.num_classes} classes: sample i has class "
                  f"i mod {view.num_classes}.")
    samples = view.sample(args.num_samples, seed=args.seed, labels=labels)
    if output.lower().endswith(ARRAY_SUFFIXES):
        with atomic_open(output, "wb") as f:
            np.save(f, samples)
    else:
        title = "Samples" if label is None else f"Samples of class {label}"
        plotting.image_grid(samples, output, ncols=args.ncols, title=title)
    print(output)
    return 0


def _class_names(num_classes):
    from kerasvae import data

    return data.CLASS_NAMES if num_classes == len(data.CLASS_NAMES) else None


def _history_for(args):
    if args.history:
        if not os.path.isfile(args.history):
            raise CommandError(f"no history file at {args.history!r}")
        return args.history
    if args.model.lower().endswith(".csv"):
        if not os.path.isfile(args.model):
            raise CommandError(f"no history file at {args.model!r}")
        return args.model
    folder = args.model if os.path.isdir(args.model) else os.path.dirname(args.model)
    candidate = os.path.join(folder, "history.csv")
    return candidate if os.path.isfile(candidate) else None


def cmd_plot(args):
    from kerasvae import data, plotting

    if args.figure == "training_curves":
        history = _history_for(args)
        if history is None:
            raise CommandError(
                f"no history.csv beside {args.model!r}: pass the CSV file written during "
                "training (history.csv in the run folder) as MODEL or --history."
            )
        output = _output_file(args.output or "training_curves.png", IMAGE_SUFFIXES, "--output file")
        print(plotting.training_curves(history, output))
        return 0

    loaded = _load_model(args.model, unsafe=args.unsafe)
    label = _check_label(loaded, args.label)
    view = plotting.ModelView(loaded.model, num_classes=loaded.num_classes)
    class_names = _class_names(view.num_classes or 10)
    (_, _), (x_test, y_test) = data.load_fashion_mnist(args.data_dir)
    if tuple(view.data_shape) != x_test.shape[1:]:
        raise CommandError(
            f"the model takes examples of shape {view.data_shape}, not Fashion-MNIST's "
            f"{x_test.shape[1:]}."
        )
    x, y = x_test[: args.examples], y_test[: args.examples]
    condition = y if view.conditional else None
    if args.figure == "all":
        folder = _writable_folder(args.output or "figures")
        written, skipped = plotting.write_figures(
            view, folder, x, y, history=_history_for(args), class_names=class_names,
            seed=args.seed,
        )
        _print_figures(written, skipped)
        return 0
    output = _output_file(args.output or f"{args.figure}.png", IMAGE_SUFFIXES, "--output file")
    pairs = min(4, len(x) // 2)
    first = None if condition is None else condition
    draw = {
        "samples": lambda: plotting.plot_samples(
            view, output, seed=args.seed, class_names=class_names,
            labels=None if label is None else [label]),
        "reconstructions": lambda: plotting.plot_reconstructions(
            view, x[:10], output, labels=None if first is None else first[:10]),
        "latent": lambda: plotting.plot_latent(view, x, y, output, class_names=class_names),
        "manifold": lambda: plotting.plot_manifold(
            view, output, x=x, labels=first,
            label=None if condition is None else (label if label is not None else 0)),
        "traversals": lambda: plotting.plot_traversals(view, x, output, labels=first),
        "interpolation": lambda: plotting.plot_interpolation(
            view, x[:pairs], x[pairs : 2 * pairs], output,
            labels=None if first is None else first[:pairs]),
        "kl_per_dimension": lambda: plotting.plot_kl_per_dimension(view, x, output, labels=first),
    }
    print(draw[args.figure]())
    return 0


def cmd_evaluate(args):
    import keras

    from kerasvae import data, evaluation

    model = _load_model(args.model, unsafe=args.unsafe).require_keras("evaluate")
    if not getattr(model, "compiled", False):  # a weights-only file: evaluate needs compile
        model.compile(optimizer=keras.optimizers.Adam())
    if args.output:
        _output_file(args.output, (".json",), "--output file")
    (_, _), (x_test, y_test) = data.load_fashion_mnist(args.data_dir)
    print(
        f"Evaluating on {len(x_test)} test images (importance-sampled NLL with "
        f"K={args.nll_samples} on the first {min(args.nll_examples, len(x_test))})"
    )
    metrics = evaluation.evaluate_vae(
        model,
        x_test,
        labels=y_test if getattr(model, "num_classes", None) else None,
        num_importance_samples=args.nll_samples,
        nll_examples=args.nll_examples,
        verbose=_progress_verbose(),
    )
    print("Test set:")
    _print_metrics(metrics)
    if args.output:
        from kerasvae.io_utils import atomic_write_text

        print(atomic_write_text(args.output, json.dumps(metrics, indent=2)))
    return 0


def cmd_export(args):
    import keras

    from kerasvae import export

    if keras.backend.backend() != "tensorflow":
        raise CommandError(
            "export needs the TensorFlow backend (SavedModels are TensorFlow graphs). "
            f"Received: --backend {keras.backend.backend()}; run it with --backend tensorflow."
        )
    model = _load_model(args.model, unsafe=args.unsafe).require_keras("export")
    _writable_folder(args.base_path, "export folder")
    path = export.export_saved_model(model, args.base_path, version=args.version, overwrite=args.overwrite)
    print(path)
    return 0


def cmd_serving_config(args):
    from kerasvae import serving

    models = {}
    for item in args.models:
        name, sep, base = item.partition("=")
        if not sep or not name or not base:
            raise CommandError(f"expected NAME=BASE_PATH, got {item!r}")
        models[name] = base
    serving.write_models_config(args.output, models, base_path_prefix=args.base_path_prefix)
    print(args.output)
    return 0


HANDLERS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "plot": cmd_plot,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "presets": cmd_presets,
    "pretrained": cmd_pretrained,
    "serving-config": cmd_serving_config,
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    backend = getattr(args, "backend", None)
    import keras

    if backend is not None and keras.backend.backend() != backend:
        print(
            f"error: --backend {backend}: Keras already runs on {keras.backend.backend()} in "
            "this process (the backend is fixed when Keras is first imported). Run "
            f"`kerasvae --backend {backend} ...` as a new command, or set KERAS_BACKEND={backend}.",
            file=sys.stderr,
        )
        return 2
    from kerasvae.callbacks_safety import NonFiniteLossError, NonFiniteWeightsError

    try:
        return HANDLERS[args.verb](args) or 0
    except (
        CommandError, FileNotFoundError, FileExistsError, ValueError, PermissionError,
        NonFiniteLossError, NonFiniteWeightsError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
