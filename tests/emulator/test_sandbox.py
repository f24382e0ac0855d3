"""The per-job sandbox: the /opt/ml layout and the refusal of paths that would escape it."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_spot_provider.emulator.sandbox import Sandbox, SandboxError


def _request(local_path: str | None = None) -> dict[str, object]:
    if local_path is None:
        return {}
    return {"CheckpointConfig": {"S3Uri": "s3://bucket/ckpt", "LocalPath": local_path}}


def test_layout_maps_opt_ml_under_the_data_dir(tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path, "job-1", _request())
    root = tmp_path.resolve() / "jobs" / "job-1" / "algo-1"
    assert box.root == root
    assert box.input_config_dir == root / "input" / "config"
    assert box.input_data_dir == root / "input" / "data"
    assert box.model_dir == root / "model"
    assert box.output_dir == root / "output"
    assert box.output_data_dir == root / "output" / "data"
    assert box.checkpoint_dir == root / "checkpoints"
    assert box.channel_dir("train") == root / "input" / "data" / "train"
    for directory in (box.input_config_dir, box.model_dir, box.output_data_dir, box.code_dir):
        assert directory.is_dir()
    assert box.checkpoint_dir.is_dir()
    assert box.container_path(box.checkpoint_dir) == "/opt/ml/checkpoints"
    assert box.container_path(box.root) == "/opt/ml"


def test_each_host_has_its_own_root(tmp_path: Path) -> None:
    one = Sandbox.create(tmp_path, "job-1", _request(), host="algo-1")
    two = Sandbox.create(tmp_path, "job-1", _request(), host="algo-2")
    assert one.root != two.root
    assert two.root.name == "algo-2"


@pytest.mark.parametrize(
    ("local_path", "relative", "container"),
    [
        ("/opt/ml/checkpoints/", "checkpoints", "/opt/ml/checkpoints"),
        ("/opt/ml/ckpt/run-1", "ckpt/run-1", "/opt/ml/ckpt/run-1"),
        ("/checkpoints", "rootfs/checkpoints", "/checkpoints"),
        ("/tmp/./ckpt//", "rootfs/tmp/ckpt", "/tmp/ckpt"),
        ("/opt/mlx/c", "rootfs/opt/mlx/c", "/opt/mlx/c"),
    ],
)
def test_local_path_is_mapped_inside_the_root(
    tmp_path: Path, local_path: str, relative: str, container: str
) -> None:
    box = Sandbox.create(tmp_path, "job-1", _request(local_path))
    assert box.checkpoint_dir == box.root / relative
    assert box.checkpoint_dir.is_dir()
    assert box.checkpoint_local_path == local_path
    assert box.container_path(box.checkpoint_dir) == container


@pytest.mark.parametrize(
    "local_path",
    [
        "../outside",
        "relative/ckpt",
        "/opt/ml/../../../etc",
        "/opt/ml/checkpoints/../..",
        "/..",
        "/",
        "/opt/ml",
        "/opt/ml/",
        "/opt/ml/input",
        "/opt/ml/input/data/train",
        "/opt/ml/code/ckpt",
        "/opt/ml/output",
        "/opt/ml/tmp",
        "/opt/ml/ck\x00pt",
    ],
)
def test_escaping_or_clashing_local_path_is_refused(tmp_path: Path, local_path: str) -> None:
    with pytest.raises(SandboxError) as err:
        Sandbox.validate_local_path(local_path)
    assert isinstance(err.value, ValueError)
    assert repr(local_path) in str(err.value)
    with pytest.raises(SandboxError):
        Sandbox.create(tmp_path, "job-1", _request(local_path))
    assert not (tmp_path / "jobs" / "job-1" / "algo-1" / "checkpoints").exists()


def test_valid_local_paths_pass_validation() -> None:
    for local_path in ("/opt/ml/checkpoints/", "/opt/ml/output/ckpt", "/ckpt", "/opt/ml/model/c"):
        Sandbox.validate_local_path(local_path)


@pytest.mark.parametrize("job_name", ["../escape", "a/b", "", ".", "x" * 64, "-lead"])
def test_unsafe_job_name_is_refused(tmp_path: Path, job_name: str) -> None:
    with pytest.raises(SandboxError):
        Sandbox.create(tmp_path, job_name, _request())
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


@pytest.mark.parametrize("name", ["..", ".", "a/b", "", "x" * 65, "tr ain"])
def test_unsafe_channel_name_is_refused(tmp_path: Path, name: str) -> None:
    box = Sandbox.create(tmp_path, "job-1", _request())
    with pytest.raises(SandboxError):
        box.channel_dir(name)


def test_symlinked_checkpoint_dir_is_refused_when_reused(tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path, "job-1", _request())
    outside = tmp_path / "outside"
    outside.mkdir()
    box.checkpoint_dir.rmdir()
    box.checkpoint_dir.symlink_to(outside)
    assert not box.contains(box.checkpoint_dir)
    with pytest.raises(SandboxError, match="outside the sandbox"):
        Sandbox.create(tmp_path, "job-1", _request())


def test_reset_for_restart_without_checkpoint_config_keeps_nothing(tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path, "job-1", {"CheckpointConfig": {"LocalPath": "/ckpt"}})
    (box.checkpoint_dir / "file.bin").write_bytes(b"x")
    box.checkpoint_dir.with_name("elsewhere").symlink_to(tmp_path)
    box.reset_for_restart()
    assert list(box.root.rglob("*.bin")) == []
    assert box.checkpoint_dir.is_dir()


def test_reset_for_restart_keeps_nothing_local_but_synced_checkpoints(tmp_path: Path) -> None:
    """A restart keeps only the synced checkpoint dir: its files may not be in S3 yet."""
    box = Sandbox.create(tmp_path, "job-1", _request("/ckpt"))
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    for directory in (
        box.checkpoint_dir,
        box.model_dir,
        box.output_data_dir,
        box.channel_dir("train"),
        box.code_dir,
        box.input_config_dir,
    ):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "file.bin").write_bytes(b"x")
    (box.model_dir / "link").symlink_to(outside)
    box.reset_for_restart()
    assert outside.read_text() == "keep me"
    kept = sorted(p.relative_to(box.root).as_posix() for p in box.root.rglob("*.bin"))
    assert kept == ["rootfs/ckpt/file.bin"]
    assert not (box.model_dir / "link").exists()
    for directory in (box.model_dir, box.output_data_dir, box.code_dir):
        assert directory.is_dir()
        assert not any(directory.iterdir())
