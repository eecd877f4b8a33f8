"""Command line: `python -m kerasvae <verb>` (or `kerasvae <verb>`).

Verbs:
    presets                         list the zoo
    train --preset NAME [...]       train on Fashion-MNIST, evaluate, export (resumable)
    evaluate MODEL.keras            ELBO parts, importance-sampled NLL, active units
    export MODEL.keras BASE_PATH    write BASE_PATH/<version>/ for TF Serving
    serving-config NAME=BASE ...    write a TF Serving models.config
"""

import argparse
import json
import os
import sys
import time


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser():
    parser = argparse.ArgumentParser(prog="kerasvae", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    verbs.add_parser("presets", help="list the model zoo")

    train = verbs.add_parser("train", help="train a zoo preset on Fashion-MNIST, evaluate, export")
    train.add_argument("--preset", default="mlp_fashion_mnist")
    train.add_argument("--epochs", type=_positive_int, help="defaults to the preset's")
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--train-examples", type=_positive_int, help="use the first N training images")
    train.add_argument("--output", help="run folder (default runs/<preset>)")
    train.add_argument("--export-dir", help="SavedModel base path (default <output>/savedmodel)")
    train.add_argument("--no-export", action="store_true")
    train.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--nll-samples", type=_positive_int, default=100)
    train.add_argument("--nll-examples", type=_positive_int, default=1000)
    train.add_argument("--force", action="store_true", help="retrain even if the run finished")

    evaluate = verbs.add_parser("evaluate", help="evaluate a .keras model on the test set")
    evaluate.add_argument("model")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--nll-samples", type=_positive_int, default=100)
    evaluate.add_argument("--nll-examples", type=_positive_int, default=1000)

    export = verbs.add_parser("export", help="export a .keras model as a versioned SavedModel")
    export.add_argument("model")
    export.add_argument("base_path")
    export.add_argument("--version", type=_positive_int)
    export.add_argument("--overwrite", action="store_true")

    config = verbs.add_parser("serving-config", help="write a TF Serving models.config")
    config.add_argument("models", nargs="+", metavar="NAME=BASE_PATH")
    config.add_argument("--output", default="models.config")
    config.add_argument("--base-path-prefix", help="rewrite base paths as PREFIX/NAME (e.g. /models)")
    return parser


def _load(path):
    import keras

    import kerasvae  # noqa: F401  (registers the classes)

    if not os.path.isfile(path):
        raise SystemExit(f"error: no model file at {path!r}")
    return keras.saving.load_model(path, safe_mode=True)


def _print_metrics(metrics):
    for key, value in metrics.items():
        print(f"  {key:24s} {value:.4f}" if isinstance(value, float) else f"  {key:24s} {value}")


def cmd_presets(args):
    from kerasvae import zoo

    for name, preset in zoo.PRESETS.items():
        print(f"{name:28s} {preset.description}")


def cmd_train(args):
    import keras
    import numpy as np

    from kerasvae import callbacks, data, evaluation, zoo
    from kerasvae.callbacks import atomic_save_model
    from kerasvae.io_utils import atomic_write_text

    preset = zoo.get_preset(args.preset)
    epochs = args.epochs or preset.epochs
    batch_size = args.batch_size or preset.batch_size
    learning_rate = args.learning_rate or preset.learning_rate
    output = args.output or os.path.join("runs", args.preset)
    os.makedirs(output, exist_ok=True)
    model_path = os.path.join(output, "model.keras")
    metrics_path = os.path.join(output, "metrics.json")
    run_config = {
        "preset": args.preset, "epochs": epochs, "batch_size": batch_size,
        "learning_rate": learning_rate, "train_examples": args.train_examples, "seed": args.seed,
    }

    (x_train, _), (x_test, _) = data.load_fashion_mnist(args.data_dir)
    if args.train_examples:
        x_train = x_train[: args.train_examples]
    print(f"Fashion-MNIST: {len(x_train)} train, {len(x_test)} test images")

    finished = None
    if os.path.isfile(model_path) and os.path.isfile(metrics_path) and not args.force:
        with open(metrics_path) as f:
            finished = json.load(f)
    if finished and finished.get("run_config") == run_config:
        print(f"Run already finished ({model_path}); pass --force to retrain.")
        model = keras.saving.load_model(model_path, safe_mode=True)
        metrics = finished["test"]
    else:
        keras.utils.set_random_seed(args.seed)
        checkpoint = callbacks.ResumableCheckpoint(os.path.join(output, "checkpoint"))
        model, initial_epoch = checkpoint.resume(zoo.build(args.preset, seed=args.seed))
        if initial_epoch:
            print(f"Resuming from epoch {initial_epoch} ({checkpoint.checkpoint_path})")
        else:
            model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        train_ds = data.make_dataset(x_train, batch_size, shuffle=True, seed=args.seed)
        test_ds = data.make_dataset(x_test, 1000, shuffle=False)
        start = time.time()
        if initial_epoch < epochs:
            model.fit(
                train_ds,
                epochs=epochs,
                initial_epoch=initial_epoch,
                validation_data=test_ds,
                callbacks=[
                    checkpoint,
                    keras.callbacks.TerminateOnNaN(),
                    keras.callbacks.CSVLogger(os.path.join(output, "history.csv"), append=True),
                ],
                shuffle=False,  # the dataset reshuffles itself each epoch
                verbose=2,
            )
        train_seconds = time.time() - start
        atomic_save_model(model, model_path)
        metrics = evaluation.evaluate_vae(
            model, x_test, num_importance_samples=args.nll_samples, nll_examples=args.nll_examples
        )
        metrics["train_seconds_this_session"] = round(train_seconds, 1)
        atomic_write_text(
            metrics_path, json.dumps({"run_config": run_config, "test": metrics}, indent=2)
        )
    print(f"Test set ({args.preset}):")
    _print_metrics(metrics)

    if not args.no_export:
        from kerasvae import export

        base = args.export_dir or os.path.join(output, "savedmodel")
        versions = export.existing_versions(base)
        if versions and finished:
            print(f"SavedModel already exported: {os.path.join(base, str(versions[-1]))}")
        else:
            print(f"SavedModel written to {export.export_saved_model(model, base)}")
    sample_path = os.path.join(output, "samples.npy")
    np.save(sample_path, np.asarray(model.sample(16, seed=args.seed)))
    return 0


def cmd_evaluate(args):
    from kerasvae import data, evaluation

    model = _load(args.model)
    (_, _), (x_test, _) = data.load_fashion_mnist(args.data_dir)
    metrics = evaluation.evaluate_vae(
        model, x_test, num_importance_samples=args.nll_samples, nll_examples=args.nll_examples
    )
    _print_metrics(metrics)
    return 0


def cmd_export(args):
    from kerasvae import export

    model = _load(args.model)
    path = export.export_saved_model(model, args.base_path, version=args.version, overwrite=args.overwrite)
    print(path)
    return 0


def cmd_serving_config(args):
    from kerasvae import serving

    models = {}
    for item in args.models:
        name, sep, base = item.partition("=")
        if not sep or not name or not base:
            raise SystemExit(f"error: expected NAME=BASE_PATH, got {item!r}")
        models[name] = base
    serving.write_models_config(args.output, models, base_path_prefix=args.base_path_prefix)
    print(args.output)
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    handler = {
        "presets": cmd_presets,
        "train": cmd_train,
        "evaluate": cmd_evaluate,
        "export": cmd_export,
        "serving-config": cmd_serving_config,
    }[args.verb]
    try:
        return handler(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
