"""Argument checks shared by the config writers and the clients."""

import numbers
import re

# TF Serving's REST path takes any name without "/" or ":"; the stricter set
# keeps names safe in URLs, file names and container paths alike.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(name, what="model name"):
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"Invalid {what}: it must be a non-empty string of letters, digits, '_', '.' "
            f"or '-' (and not '.' or '..'). Received: {name!r}"
        )
    return name


def check_version(version, what="version"):
    # numbers.Integral covers NumPy integers; bool is one too, and is refused.
    # Versions travel as int64 (ModelSpec.version, the config's version lists).
    if (
        isinstance(version, bool)
        or not isinstance(version, numbers.Integral)
        or not 0 < version < 2**63
    ):
        raise ValueError(f"{what} must be a positive 64-bit integer. Received: {what}={version!r}")
    return int(version)


def check_port(port, what):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{what} must be an integer in [1, 65535]. Received: {what}={port!r}")
    return port


def check_timeout(timeout):
    if timeout is not None and (not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ValueError(
            f"timeout must be a positive number of seconds or None. Received: {timeout!r}"
        )
    return timeout


def check_model_spec(model_name, version, version_label):
    """Checks what a client asks for; returns the version as an int (or None)."""
    check_name(model_name)
    if version is not None and version_label is not None:
        raise ValueError(
            "Pass version or version_label, not both. Received: "
            f"version={version!r}, version_label={version_label!r}"
        )
    if version_label is not None:
        check_name(version_label, "version label")
    return None if version is None else check_version(version)
