"""Model comparison: bit for bit, or numbers within a tolerance (.npy, .npz, .json)."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from airflow_spot_provider.verify.artifacts import Tolerance, compare_models, tar_members

EXACT = Tolerance()
LOOSE = Tolerance(rtol=1e-6, atol=1e-9)


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


W = np.array([0.5, -1.25, 3.0])


def test_identical_members_are_bit_identical_even_if_the_archives_differ() -> None:
    members = {"model.npy": _npy(W), "metrics.json": b'{"loss": 0.1}'}
    # gzip headers carry times: the archives differ, their members do not.
    got = compare_models(_tar(members), _tar(dict(reversed(list(members.items())))), EXACT)
    assert got.equal and got.bit_identical and got.differences == ()
    assert tar_members(_tar({"./a": b"x"})) == {"a": b"x"}


def test_exact_comparison_names_each_differing_member() -> None:
    expected = _tar({"model.npy": _npy(W), "notes.txt": b"a", "gone.bin": b"b"})
    got = _tar({"model.npy": _npy(W + 1e-12), "notes.txt": b"a", "extra.bin": b"c"})
    result = compare_models(got, expected, EXACT)
    assert not result.equal and not result.bit_identical
    assert result.differences == (
        "gone.bin: missing",
        "extra.bin: not in the reference",
        "model.npy: bytes differ",
    )


@pytest.mark.parametrize(
    ("got", "equal", "why"),
    [
        (W + 1e-12, True, None),
        (W * (1 + 1e-3), False, "differs by up to 0.003"),
        (W[:2], False, "shape (2,) instead of (3,)"),
    ],
)
def test_npy_within_tolerance(got: np.ndarray, equal: bool, why: str | None) -> None:
    result = compare_models(_tar({"m.npy": _npy(got)}), _tar({"m.npy": _npy(W)}), LOOSE)
    assert result.equal is equal and not result.bit_identical
    if why:
        assert why in result.differences[0]


def test_npz_compares_each_array_and_their_names() -> None:
    expected = _tar({"m.npz": _npz(w=W, b=np.array([1.0]))})
    close = _tar({"m.npz": _npz(w=W + 1e-12, b=np.array([1.0]))})
    renamed = _tar({"m.npz": _npz(w=W, c=np.array([1.0]))})
    assert compare_models(close, expected, LOOSE).equal
    result = compare_models(renamed, expected, LOOSE)
    assert result.differences == ("m.npz: arrays ['c', 'w'] instead of ['b', 'w']",)


@pytest.mark.parametrize(
    ("got", "why"),
    [
        ({"loss": 0.1 + 1e-12, "steps": 40, "tags": ["a"]}, None),
        ({"loss": 0.2, "steps": 40, "tags": ["a"]}, "$.loss: 0.2 instead of 0.1"),
        ({"loss": 0.1, "steps": 41, "tags": ["a"]}, "$.steps: 41 instead of 40"),
        ({"loss": 0.1, "steps": 40, "tags": ["b"]}, "$.tags[0]: 'b' instead of 'a'"),
        ({"loss": 0.1, "steps": 40, "tags": []}, "$.tags: 0 items instead of 1"),
        ({"loss": 0.1, "steps": 40}, "$: keys ['loss', 'steps'] instead of"),
        ({"loss": True, "steps": 40, "tags": ["a"]}, "$.loss: True instead of 0.1"),
    ],
)
def test_json_numbers_within_tolerance(got: dict[str, object], why: str | None) -> None:
    expected = {"loss": 0.1, "steps": 40, "tags": ["a"]}
    result = compare_models(
        _tar({"metrics.json": json.dumps(got).encode()}),
        _tar({"metrics.json": json.dumps(expected).encode()}),
        LOOSE,
    )
    assert result.equal is (why is None)
    if why:
        assert result.differences[0].startswith(f"metrics.json: {why}")


def test_other_formats_need_identical_bytes_and_bad_inputs_are_named() -> None:
    result = compare_models(_tar({"m.pt": b"1"}), _tar({"m.pt": b"2"}), LOOSE)
    assert result.differences == ("m.pt: bytes differ (not a numeric format: .npy, .npz, .json)",)
    unreadable = compare_models(_tar({"m.json": b"{"}), _tar({"m.json": b"{}"}), LOOSE)
    assert unreadable.differences[0].startswith("m.json: cannot be read as numbers")
    broken = compare_models(b"not a tar", _tar({}), EXACT)
    assert not broken.equal and broken.differences[0].startswith("model.tar.gz unreadable")


def test_nan_equals_nan_and_bad_tolerances_are_refused() -> None:
    assert Tolerance(atol=0.1).close(float("nan"), float("nan"))
    assert not Tolerance(atol=0.1).close(float("nan"), 1.0)
    with pytest.raises(ValueError, match=r"tolerance atol=inf: must be a finite number >= 0"):
        Tolerance(atol=float("inf"))
