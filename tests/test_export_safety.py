"""An export killed midway leaves nothing TF Serving would load; damaged exports give clear errors."""

import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests import families

pytestmark = pytest.mark.requires_tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tf_serving_version(name):
    """The version TF Serving reads from a folder name, or None.

    TF Serving's file-system source (file_system_storage_path_source.cc,
    ParseVersionNumber) takes a child of the base path as a version when
    `strings::safe_strto64` parses its whole name: optional surrounding
    whitespace, an optional sign, decimal digits, within int64. Anything else
    (".tmp-2-...") is skipped.
    """
    match = re.fullmatch(r"\s*([+-]?)(\d+)\s*", name)
    if not match:
        return None
    value = int(match.group(2)) * (-1 if match.group(1) == "-" else 1)
    return value if -(2**63) <= value < 2**63 else None


def test_the_version_rule_follows_tf_serving():
    assert [tf_serving_version(n) for n in ("1", "007", " 3", "-1", "+4")] == [1, 7, 3, -1, 4]
    assert all(
        tf_serving_version(n) is None
        for n in (".tmp-2-ab12", ".old-1-ff", "2a", "1.0", "", "9" * 20, "v1")
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from kerasvae import export

    model = families.build("VAE")
    return export.export_saved_model(model, tmp_path_factory.mktemp("export"))


def _copy(source, tmp_path):
    target = tmp_path / "1"
    shutil.copytree(source, target)
    return target


def test_an_export_killed_midway_leaves_no_version_tf_serving_would_load(exported, tmp_path):
    """SIGKILL while the SavedModel's variables are being written (one kill:
    every write goes to the hidden temporary folder; the in-process failures
    are in tests/test_export.py)."""
    from kerasvae import export

    _copy(exported, tmp_path)  # version 1, complete
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-m", "tests.export_kill_runs", str(tmp_path), "variables"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    children = os.listdir(tmp_path)
    # Version 1 is intact, and it is all TF Serving sees: what the killed
    # export left is a hidden temporary folder, with part of the variables.
    assert [tf_serving_version(c) for c in children if tf_serving_version(c) is not None] == [1]
    leftovers = [c for c in children if c != "1"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-2-"), children
    assert os.listdir(tmp_path / leftovers[0] / "variables")
    assert not os.path.exists(tmp_path / leftovers[0] / "saved_model.pb")
    export.verify_saved_model(str(tmp_path / "1"))
    assert export.existing_versions(tmp_path) == [1]  # the next export is version 2


# === Damaged SavedModel folders ===
# A missing or garbage saved_model.pb is in tests/test_export.py. One test
# walks the damages (each on a fresh copy): a test apiece would cost a
# Keras session reset apiece.
DAMAGES = [
    ("saved_model.pb", "truncate"),
    ("saved_model.pb", "flip"),
    ("variables/variables.index", "truncate"),
    ("variables/variables.index", "missing"),
    ("variables/variables.data-00000-of-00001", "truncate"),
    ("variables/variables.data-00000-of-00001", "one_bit"),  # caught by the checkpoint's checksums
]


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "missing":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "one_bit":
        data[-5] ^= 0x01  # one bit in the last weight
        path.write_bytes(bytes(data))
    else:  # flip bytes in the middle
        for i in range(len(data) // 2, min(len(data), len(data) // 2 + 16)):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))


def test_damaged_saved_models_are_refused_naming_the_folder(exported, tmp_path):
    from kerasvae import export

    for i, (relative, how) in enumerate(DAMAGES):
        folder = tmp_path / str(i)
        shutil.copytree(exported, folder)
        _damage(folder / relative, how)
        with pytest.raises(ValueError, match="corrupt or unreadable") as info:
            export.verify_saved_model(str(folder))
        assert str(folder) in str(info.value), (relative, how)


def test_export_refuses_non_finite_weights_and_keeps_the_served_version(exported, tmp_path):
    from kerasvae import export

    first = _copy(exported, tmp_path)
    model = families.build("VAE")
    kernel = model.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.inf, dtype="float32"))
    with pytest.raises(ValueError, match="non-finite") as info:
        export.export_saved_model(model, tmp_path)
    assert kernel.path in str(info.value)
    with pytest.raises(ValueError, match="non-finite"):
        export.export_saved_model(model, tmp_path, version=1, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["1"]
    export.verify_saved_model(str(first))
