"""Compare two ``model.tar.gz``: bit for bit, or numbers within a tolerance (no I/O).

With a tolerance of zero every member must be byte-identical. With a tolerance, numeric members
are compared as numbers (``numpy.isclose(got, expected, rtol, atol)``): ``.npy`` and ``.npz``
arrays (same shapes and keys), and ``.json`` documents (same structure; numbers within the
tolerance, everything else equal). Other members are always compared byte for byte.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tolerance:
    """How close numbers must be: ``|got - expected| <= atol + rtol * |expected|``.

    :param rtol: relative tolerance (>= 0).
    :param atol: absolute tolerance (>= 0).
    """

    rtol: float = 0.0
    atol: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"tolerance {name}={value!r}: must be a finite number >= 0")

    @property
    def exact(self) -> bool:
        """Whether only bit-identical artifacts pass."""
        return self.rtol == 0 and self.atol == 0

    def close(self, got: float, expected: float) -> bool:
        """Whether two numbers are within the tolerance (NaN equals NaN).

        :param got: the interrupted run's number.
        :param expected: the reference run's number.
        """
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        return abs(got - expected) <= self.atol + self.rtol * abs(expected)


@dataclass(frozen=True)
class ArtifactComparison:
    """The outcome of comparing a run's model with the reference's.

    :param equal: every member matches (bit for bit, or within the tolerance).
    :param bit_identical: the two archives' members are byte-identical.
    :param differences: the members that differ, each with why.
    """

    equal: bool
    bit_identical: bool
    differences: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "equal": self.equal,
            "bit_identical": self.bit_identical,
            "differences": list(self.differences),
        }


def tar_members(blob: bytes) -> dict[str, bytes]:
    """The regular files of a ``.tar.gz``, by member name.

    :param blob: the archive.
    :raises tarfile.TarError: not a readable archive.
    """
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                members[member.name.removeprefix("./")] = handle.read()
    return members


def compare_models(got: bytes, expected: bytes, tolerance: Tolerance) -> ArtifactComparison:
    """Compare a run's ``model.tar.gz`` with the reference's.

    :param got: the interrupted run's archive.
    :param expected: the reference run's archive.
    :param tolerance: how close numbers must be.
    """
    try:
        mine, theirs = tar_members(got), tar_members(expected)
    except tarfile.TarError as err:
        return ArtifactComparison(False, False, (f"model.tar.gz unreadable: {err}",))
    differences = [f"{name}: missing" for name in sorted(set(theirs) - set(mine))]
    differences += [f"{name}: not in the reference" for name in sorted(set(mine) - set(theirs))]
    identical = not differences
    for name in sorted(set(mine) & set(theirs)):
        if mine[name] == theirs[name]:
            continue
        identical = False
        why = (
            "bytes differ"
            if tolerance.exact
            else _numeric_difference(name, mine, theirs, tolerance)
        )
        if why:
            differences.append(f"{name}: {why}")
    return ArtifactComparison(not differences, identical, tuple(differences))


def _numeric_difference(
    name: str, mine: Mapping[str, bytes], theirs: Mapping[str, bytes], tolerance: Tolerance
) -> str | None:
    """Why two versions of a member differ beyond the tolerance; None when they are close."""
    try:
        if name.endswith((".npy", ".npz")):
            return _arrays_difference(mine[name], theirs[name], tolerance)
        if name.endswith(".json"):
            return _json_difference(json.loads(mine[name]), json.loads(theirs[name]), tolerance)
    except (ValueError, OSError) as err:
        return f"cannot be read as numbers ({err})"
    return "bytes differ (not a numeric format: .npy, .npz, .json)"


def _load_arrays(blob: bytes) -> dict[str, Any]:
    import numpy as np

    loaded = np.load(io.BytesIO(blob), allow_pickle=False)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    return {"": loaded}


def _arrays_difference(got: bytes, expected: bytes, tolerance: Tolerance) -> str | None:
    import numpy as np

    mine, theirs = _load_arrays(got), _load_arrays(expected)
    if sorted(mine) != sorted(theirs):
        return f"arrays {sorted(mine)} instead of {sorted(theirs)}"
    for key in sorted(mine):
        a, b = mine[key], theirs[key]
        label = f"array {key!r} " if key else ""
        if a.shape != b.shape:
            return f"{label}shape {a.shape} instead of {b.shape}"
        close = np.isclose(a, b, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=True)
        if not bool(np.all(close)):
            worst = float(np.max(np.abs(a.astype(float) - b.astype(float))))
            limits = f"rtol={tolerance.rtol}, atol={tolerance.atol}"
            return f"{label}differs by up to {worst:.3g} ({limits})"
    return None


def _json_difference(got: Any, expected: Any, tolerance: Tolerance, path: str = "$") -> str | None:
    if _is_number(got) and _is_number(expected):
        ok = tolerance.close(float(got), float(expected))
        return None if ok else f"{path}: {got!r} instead of {expected!r}"
    if isinstance(got, dict) and isinstance(expected, dict):
        if sorted(got) != sorted(expected):
            return f"{path}: keys {sorted(got)} instead of {sorted(expected)}"
        for key in sorted(got):
            found = _json_difference(got[key], expected[key], tolerance, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(got, list) and isinstance(expected, list):
        if len(got) != len(expected):
            return f"{path}: {len(got)} items instead of {len(expected)}"
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            found = _json_difference(a, b, tolerance, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if got == expected else f"{path}: {got!r} instead of {expected!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
