"""An export killed with SIGKILL midway, for tests/test_export_safety.py.

`python -m tests.export_kill_runs BASE_PATH KILL` exports the tiny VAE of
tests/families.py as version 2 of `BASE_PATH` (the test puts a complete
version 1 there first) and kills itself with SIGKILL at `KILL` (the test uses
`variables`; the others are for runs by hand):

- `variables`: as soon as the SavedModel's variables start to appear in the
  temporary folder (a watcher thread, so the write is cut at a real instant);
- `saved_model_pb`: as soon as `saved_model.pb` appears there;
- `verify`: when the written SavedModel is about to be loaded back and checked;
- `rename`: just before the temporary folder is renamed to the version.
"""

import glob
import os
import signal
import sys
import threading
import time


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def watch(pattern):
    """Kills this process as soon as a path matching `pattern` exists."""

    def run():
        while not glob.glob(pattern):
            time.sleep(0.001)
        die()

    threading.Thread(target=run, daemon=True).start()


def main():
    base, kill = sys.argv[1], sys.argv[2]
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras

    from kerasvae import export
    from tests import families

    keras.utils.set_random_seed(0)
    model = families.build("VAE")
    tmp = os.path.join(glob.escape(base), ".tmp-2-*")
    if kill == "variables":
        watch(os.path.join(tmp, "variables", "*"))
    elif kill == "saved_model_pb":
        watch(os.path.join(tmp, "saved_model.pb"))
    elif kill == "verify":
        export.verify_saved_model = lambda path: die()
    elif kill == "rename":
        export.os.rename = lambda src, dst: die()
    else:
        raise ValueError(f"Unknown kill point. Received: {kill!r}")
    export.export_saved_model(model, base, version=2)
    raise AssertionError("the export was not killed")


if __name__ == "__main__":
    main()
