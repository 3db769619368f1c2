"""A walk-forward run folder on S3 (``gogooku3 train --out s3://...``), on the project's real S3
server: folds published with ``done.json`` last, a fresh working copy resuming from what S3 holds,
the summary naming S3 URIs, and a consumer refusing an unfinished run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from gogooku3.config import Settings
from gogooku3.devtools.s3_server import running_s3_server
from gogooku3.devtools.seed_features import CI_MARKET
from gogooku3.training.job import run_training
from gogooku3.training.runstore import RemoteRunFolder, download_run, relocate_summary, working_folder
from gogooku3.training.trainer import TrainConfig
from gogooku3.training.walkforward import RunConfig


class RecordingStorage:
    """The run folder's real storage, with the order of the keys it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.puts = inner, []

    def put_bytes(self, key: str, data: bytes, **kw) -> None:
        self.puts.append(key)
        self.inner.put_bytes(key, data, **kw)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def s3():
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def finished_run(walk_forward_factory) -> tuple[dict, Path]:
    summary = walk_forward_factory()
    return summary, Path(summary["oos_predictions"]).parent


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_fold_is_published_with_its_done_marker_last(s3, finished_run, tmp_path) -> None:
    local = _copy(finished_run[1], tmp_path / "run")
    uri = s3.lake_uri("runs/ordered")
    remote = RemoteRunFolder(uri, local, s3.s3_settings())
    remote.storage = recording = RecordingStorage(remote.storage)
    remote.push_fold(1)
    fold_files = sorted(p.name for p in (local / "folds" / "fold_1").iterdir())
    assert recording.puts[0] == "ordered/run.json"
    assert recording.puts[-1] == "ordered/folds/fold_1/done.json"
    assert sorted(k.rsplit("/", 1)[1] for k in recording.puts[1:]) == fold_files
    # What S3 holds is what the fold folder holds, byte for byte.
    stored = RemoteRunFolder(uri, tmp_path / "back", s3.s3_settings())
    assert sorted(stored.pull()) == sorted(["run.json", *(f"folds/fold_1/{n}" for n in fold_files)])
    for name in fold_files:
        assert (tmp_path / "back/folds/fold_1" / name).read_bytes() == (
            local / "folds/fold_1" / name
        ).read_bytes()


def test_an_unfinished_fold_is_not_published(s3, finished_run, tmp_path) -> None:
    local = _copy(finished_run[1], tmp_path / "run")
    (local / "folds" / "fold_0" / "done.json").unlink()
    uri = s3.lake_uri("runs/unfinished")
    with pytest.raises(ValueError, match=r"fold_0 has no done.json"):
        RemoteRunFolder(uri, local, s3.s3_settings()).push_fold(0)
    assert RemoteRunFolder(uri, tmp_path / "back", s3.s3_settings()).pull() == []


def test_a_fresh_working_copy_resumes_from_s3_and_publishes_the_summary_last(
    s3, finished_run, features_lake_factory, tmp_path
) -> None:
    """An attempt that finished both folds and died before its summary: the next attempt, in an
    empty directory (a fresh container), trains nothing and completes the run on S3."""
    summary, folder = finished_run
    uri = s3.lake_uri("runs/resumed")
    earlier = RemoteRunFolder(uri, _copy(folder, tmp_path / "earlier"), s3.s3_settings())
    for fold in summary["folds"]:
        earlier.push_fold(fold["fold"])
    assert not earlier.finished()

    # The configuration walk_forward_factory() ran with (conftest.py).
    settings = Settings.from_env({**s3.env(), "GOGOOKU3_LAKE_URI": str(features_lake_factory())})
    console = Console(record=True, width=200)
    with working_folder(uri, settings.s3) as (out_dir, remote):
        assert out_dir.is_dir() and not any(out_dir.iterdir())
        remote.storage = recording = RecordingStorage(remote.storage)
        cfg = RunConfig(
            start=CI_MARKET["start"],
            end=CI_MARKET["end"],
            out_dir=out_dir,
            threads=2,
            train=TrainConfig(size="tiny", max_epochs=3, patience=1),
        )
        resumed = run_training(cfg, None, settings, console, tmp_path / "summary.json", remote)
    assert not out_dir.exists()  # the working copy is gone; S3 is the run's home
    text = console.export_text()
    for fold in summary["folds"]:
        assert f"fold {fold['fold']}: finished earlier, resumed from {uri}" in text
    sent = [k.removeprefix("resumed/") for k in recording.puts]
    assert not any(k.startswith("folds/") for k in sent)  # nothing retrained, nothing re-sent
    assert sent[-1] == "summary.json"
    assert {"oos_predictions.parquet", "oos_targets.parquet", "model/weights.pt"} <= set(sent)

    stored = json.loads(recording.get_bytes("resumed/summary.json"))
    assert stored == json.loads((tmp_path / "summary.json").read_text()) == resumed
    assert stored["oos_predictions"] == f"{uri}/oos_predictions.parquet"
    assert stored["plots"] and all(p.startswith(f"{uri}/plots/") for p in stored["plots"])
    assert stored["oos"] == summary["oos"]  # the same run, completed elsewhere

    back = download_run(uri, tmp_path / "downloaded", s3.s3_settings())
    assert (back / "model" / "weights.pt").read_bytes() == (folder / "model" / "weights.pt").read_bytes()


def test_a_consumer_refuses_a_run_without_its_summary(s3, finished_run, tmp_path) -> None:
    uri = s3.lake_uri("runs/no-summary")
    RemoteRunFolder(uri, _copy(finished_run[1], tmp_path / "run"), s3.s3_settings()).push_fold(0)
    with pytest.raises(FileNotFoundError, match=rf"{uri}/summary.json does not exist"):
        download_run(uri, tmp_path / "downloaded", s3.s3_settings())
    assert not (tmp_path / "downloaded").exists()


def test_a_bucket_root_is_not_a_run_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"not a bucket's root"):
        RemoteRunFolder("s3://bucket/", tmp_path)


def test_relocate_summary_moves_only_paths_inside_the_run(tmp_path) -> None:
    summary = {
        "oos_predictions": str(tmp_path / "run" / "oos_predictions.parquet"),
        "plots": [str(tmp_path / "run" / "plots" / "a.png"), "/elsewhere/b.png"],
        "oos": {"ridge": 1},
    }
    moved = relocate_summary(summary, tmp_path / "run", "s3://b/p/")
    assert moved == {
        "oos_predictions": "s3://b/p/oos_predictions.parquet",
        "plots": ["s3://b/p/plots/a.png", "/elsewhere/b.png"],
        "oos": {"ridge": 1},
    }
    assert summary["oos_predictions"].startswith(str(tmp_path))  # the input is left alone
