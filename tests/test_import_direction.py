"""Imports inside kerasvae run one way: from higher rooms to lower ones.

Every module of the package is parsed with `ast` (nothing is imported) and
each `import` statement in it, at module level or inside a function, is
mapped to the room it reaches. A room is a top-level module or subpackage of
`kerasvae/` (`serving/config.py` belongs to `serving`); `FACE` is the package
face, `kerasvae/__init__.py`, reached by `import kerasvae` or by
`from kerasvae import NAME` where NAME is not a module of its own.

`ALLOWED` below is the direction table (see DESIGN.md, "Which way the arrows
run"). A room may import itself and the rooms listed for it, and each room
lists only rooms written above it, so the table is acyclic (checked too):

- the foundation (divergences, likelihoods, layers) and the per-backend
  training steps import only the foundation below them;
- models use the foundation and training; never export, serving, cli,
  plotting;
- export knows models; serving knows only SavedModel signatures and wire
  formats (io_utils for atomic writes), never models;
- pretrained knows export's output and models, never the face;
- the face imports the rooms it re-exports; only cli (and __main__) know
  them all, face included.

A new module or an intended new arrow means one edit to `ALLOWED`, in a place
that keeps every room below the rooms that import it.
"""

import ast
import pathlib

PACKAGE = "kerasvae"
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE
FACE = "<face>"

# room -> the rooms it may import (besides itself). Order matters: a room may
# only list rooms above it.
ALLOWED = {
    "_startup": set(),
    "io_utils": set(),
    "divergences": set(),
    "schedules": set(),
    "likelihoods": {"divergences"},
    "layers": {"divergences", "likelihoods"},
    "training": set(),
    "models": {"divergences", "likelihoods", "layers", "training", "schedules"},
    "networks": {"layers"},
    "data": {"io_utils"},
    "evaluation": {"io_utils", "divergences", "likelihoods", "layers", "models", "training"},
    "plotting": {"io_utils", "data", "evaluation"},
    "callbacks": {"io_utils", "plotting"},
    "callbacks_safety": {"io_utils"},
    "zoo": {"likelihoods", "layers", "models", "networks", "schedules"},
    "protocol": {"io_utils", "data", "evaluation", "schedules", "zoo", "callbacks", "callbacks_safety"},
    "export": {"io_utils", "divergences", "likelihoods", "layers", "models"},
    "serving": {"io_utils"},
    "pretrained": {
        "io_utils", "likelihoods", "layers", "models", "networks", "callbacks", "zoo", "export",
        "protocol",
    },
    FACE: {
        "_startup", "io_utils", "divergences", "likelihoods", "layers", "training", "models",
        "networks",
        "data", "evaluation", "callbacks", "plotting", "zoo", "export", "serving", "pretrained",
        "schedules", "protocol",
    },
    "cli": {
        "_startup", "io_utils", "divergences", "likelihoods", "layers", "training", "models",
        "networks",
        "data", "evaluation", "callbacks", "plotting", "zoo", "export", "serving", "pretrained",
        "schedules", "protocol", "callbacks_safety", FACE,
    },
    "__main__": {"cli"},
}  # fmt: skip

# Backend libraries stay in the rooms that must use them (STYLE.md: math is
# keras.ops; tensorflow only in the TF train step, export, serving, tf.data).
BACKEND_ROOMS = {
    "tensorflow": {"training", "export", "serving", "data", "_startup"},
    "jax": {"training"},
}


def room_of(path):
    """The room a source file belongs to."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts == ("__init__",):
        return FACE
    return parts[0]


def is_module(name):
    return (ROOT / f"{name}.py").is_file() or (ROOT / name / "__init__.py").is_file()


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE] + parts)


def imported_rooms(path, source=None):
    """`(line, room or "lib:<library>", statement)` for every import in a file."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != PACKAGE:
                    found.append((node.lineno, "lib:" + parts[0], f"import {alias.name}"))
                elif len(parts) == 1:
                    found.append((node.lineno, FACE, f"import {alias.name}"))
                else:
                    found.append((node.lineno, parts[1], f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package[: len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
            else:
                parts = node.module.split(".")
            if parts[0] != PACKAGE:
                found.append((node.lineno, "lib:" + parts[0], f"from {node.module} import ..."))
            elif len(parts) > 1:
                found.append((node.lineno, parts[1], f"from {'.'.join(parts)} import ..."))
            else:  # from kerasvae import a, b: a module of its own, or a name of the face
                for alias in node.names:
                    room = alias.name if is_module(alias.name) else FACE
                    found.append((node.lineno, room, f"from {PACKAGE} import {alias.name}"))
    return found


def violations(path, source=None):
    """The imports of a file that break `ALLOWED` or `BACKEND_ROOMS`."""
    room = room_of(path)
    allowed = ALLOWED[room] | {room}
    wrong = []
    for line, target, text in imported_rooms(path, source):
        if target.startswith("lib:"):
            library = target[4:]
            if library in BACKEND_ROOMS and room not in BACKEND_ROOMS[library]:
                wrong.append(
                    f"line {line}: {text} (a backend, allowed only in "
                    f"{sorted(BACKEND_ROOMS[library])})"
                )
        elif target not in allowed:
            wrong.append(f"line {line}: {text} reaches {target}")
    return wrong


SOURCES = sorted(ROOT.rglob("*.py"))


def test_the_table_runs_one_way():
    order = list(ALLOWED)
    for room, allowed in ALLOWED.items():
        above = set(order[: order.index(room)])
        assert allowed <= above, (
            f"ALLOWED[{room!r}] lists {sorted(allowed - above)}, which are not above it: "
            "the arrows would run both ways"
        )


def test_every_room_is_in_the_table():
    rooms = {room_of(path) for path in SOURCES}
    assert {FACE, "serving", "pretrained", "models", "layers"} <= rooms
    missing = rooms - set(ALLOWED)
    assert not missing, f"New rooms {sorted(missing)}: add them to ALLOWED in {__file__}"


def test_imports_run_downward():
    report = []
    for path in SOURCES:
        wrong = violations(path)
        if wrong:
            room = room_of(path)
            report.append(
                f"{path.relative_to(ROOT.parent)} ({room}) may import only "
                f"{sorted(ALLOWED[room])} of kerasvae:\n  " + "\n  ".join(wrong)
            )
    assert len(SOURCES) > 20
    assert not report, "\n".join(report)


def test_the_checker_sees_every_form_of_import():
    # The test above is only as good as this parser: it must catch each form,
    # at module level and inside functions, absolute and relative.
    probe = (
        "import kerasvae\n"
        "from kerasvae import VAE, zoo\n"
        "def f():\n"
        "    import kerasvae.export\n"
        "    from kerasvae.models.vae import VAE\n"
        "    from . import cli\n"
        "    from .serving.rest import RESTClient\n"
        "    import tensorflow as tf\n"
        "    import numpy as np\n"
    )
    # Read as if it were kerasvae/pretrained.py.
    pretrained = ROOT / "pretrained.py"
    assert [(t, text) for _, t, text in imported_rooms(pretrained, probe)] == [
        (FACE, "import kerasvae"),
        (FACE, "from kerasvae import VAE"),
        ("zoo", "from kerasvae import zoo"),
        ("export", "import kerasvae.export"),
        ("models", "from kerasvae.models.vae import ..."),
        ("cli", "from kerasvae import cli"),
        ("serving", "from kerasvae.serving.rest import ..."),
        ("lib:tensorflow", "import tensorflow"),
        ("lib:numpy", "import numpy"),
    ]
    assert violations(pretrained, probe) == [
        "line 1: import kerasvae reaches <face>",
        "line 2: from kerasvae import VAE reaches <face>",
        "line 6: from kerasvae import cli reaches cli",
        "line 7: from kerasvae.serving.rest import ... reaches serving",
        "line 8: import tensorflow (a backend, allowed only in "
        "['_startup', 'data', 'export', 'serving', 'training'])",
    ]
    # Relative imports resolve against the importing module's package.
    rest = ROOT / "serving" / "rest.py"
    relative = "from . import errors\nfrom .. import models\n"
    assert imported_rooms(rest, relative) == [
        (1, "serving", "from kerasvae.serving import ..."),
        (2, "models", "from kerasvae import models"),
    ]
    assert violations(rest, relative) == ["line 2: from kerasvae import models reaches models"]
