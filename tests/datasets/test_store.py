import csv
import json
import os
import types
from dataclasses import replace

import numpy as np
import pytest

from spacelm.datasets import convert, store
from spacelm.datasets.rooms import RoomSample
from spacelm.datasets.store import (
    DatasetWriter,
    assign_split,
    dataset_stats,
    read_manifest,
)
from spacelm.datasets.synthetic import SynthConfig
from spacelm.errors import ArgumentError
from spacelm.points.ply import read_ply
from spacelm.scene import Box, Layout, Wall
from spacelm.scene.language import parse_layout, read_layout


def _sample(scene: str, n_points: int = 500) -> RoomSample:
    rng = np.random.default_rng(len(scene))
    xyz = rng.uniform(0, 1, size=(n_points, 3)).astype(np.float32)  # all inside the "full" box
    layout = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5, 0)],
                    boxes=[Box("full", 0.5, 0.5, 0.5, 0, 1, 1, 1),  # n_points inside
                           Box("empty", 3, 3, 0.5, 0, 1, 1, 1),  # no point inside: filtered
                           Box("tiny", 0.5, 0.5, 0.5, 0, 0.1, 0.1, 0.1)])  # all extents < 0.15
    return RoomSample(f"fake_{scene}", "fake", scene, "0", xyz,
                      np.full((n_points, 3), 200, np.uint8), layout, {"unknown_class": 2}, "bedroom")


@pytest.fixture
def fake_source(monkeypatch):
    calls = []

    def convert_scene(root, scene, *, label_set="nyu40"):
        calls.append(scene)
        if scene == "broken":
            raise ValueError(f"{root}/broken/objects.csv: missing column 'nyu40_id'")
        return [_sample(scene)]

    module = types.SimpleNamespace(list_scenes=lambda root: ["a", "b", "broken", "c"],
                                   convert_scene=convert_scene)
    monkeypatch.setattr(convert, "source_module", lambda source: module)
    return calls


def test_convert_writes_spatiallm_format_and_manifest(tmp_path, fake_source):
    out = tmp_path / "out"
    summary = convert.convert_dataset("fake", tmp_path, out, val_fraction=0.0, show_progress=False)
    assert summary["scenes"] == 3 and summary["failed"] == 1 and summary["train_samples"] == 3
    # files
    cloud = read_ply(out / "pcd" / "fake_a.ply")
    assert len(cloud) == 500 and cloud.rgb[0].tolist() == [200, 200, 200]
    layout = read_layout(out / "layout" / "fake_a.txt").layout
    assert [b.label for b in layout.boxes] == ["full"]  # SpatialLM's filters applied
    # manifest: drop counts merged with the converter's own
    rows = {r["id"]: r for r in read_manifest(out)}
    assert rows["fake_a"]["dropped"] == {"box_too_few_points": 1, "box_too_small": 1, "unknown_class": 2}
    assert rows["fake_a"]["classes"] == {"full": 1} and rows["fake_a"]["points"] == 500
    # errors.jsonl names the scene and the reason
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["scene_key"] == "fake/broken" and "missing column 'nyu40_id'" in errors[0]["error"]
    # split.csv and ShareGPT records
    with (out / "split.csv").open() as f:
        split_rows = list(csv.DictReader(f))
    assert [(r["id"], r["split"], r["room_type"]) for r in split_rows][0] == ("fake_a", "train", "bedroom")
    records = json.loads((out / "spacelm_train.json").read_text())
    human, gpt = records[0]["conversations"]
    assert human["from"] == "human" and human["value"].startswith("<point_cloud>Detect walls, doors")
    assert gpt["value"].startswith("<|layout_s|>wall_0=Wall(") and gpt["value"].endswith("<|layout_e|>")
    inner = gpt["value"][len("<|layout_s|>"):-len("<|layout_e|>")]
    assert parse_layout(inner, strict=True).layout == layout
    assert records[0]["point_clouds"] == ["pcd/fake_a.ply"]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["spacelm_train"]["formatting"] == "sharegpt"


def test_rerun_skips_finished_scenes_and_retries_failed(tmp_path, fake_source):
    out = tmp_path / "out"
    convert.convert_dataset("fake", tmp_path, out, show_progress=False)
    fake_source.clear()
    summary = convert.convert_dataset("fake", tmp_path, out, show_progress=False)
    assert fake_source == ["broken"]  # only the failed scene is tried again
    assert summary["skipped"] == 3 and summary["failed"] == 1
    assert len(read_manifest(out)) == 3


def test_shards_split_the_work_and_finalize_sees_all(tmp_path, fake_source):
    out = tmp_path / "out"
    convert.convert_dataset("fake", tmp_path, out, shard=(0, 2), show_progress=False)
    assert sorted(fake_source) == ["a", "broken"]  # sorted keys a, b, broken, c -> every 2nd from 0
    summary = convert.convert_dataset("fake", tmp_path, out, shard=(1, 2), show_progress=False)
    assert sorted(fake_source) == ["a", "b", "broken", "c"]
    assert (out / "manifest.0-of-2.jsonl").is_file() and (out / "manifest.1-of-2.jsonl").is_file()
    assert summary["train_samples"] + summary["val_samples"] == 3
    with pytest.raises(ValueError, match="0 <= I < N"):
        convert.convert_dataset("fake", tmp_path, out, shard=(2, 2), show_progress=False)


def test_interrupted_append_is_repaired(tmp_path):
    writer = DatasetWriter(tmp_path)
    writer.record_scene("s/1", [{"id": "x1", "source": "s", "scene": "1"}])
    with writer.manifest_path.open("a") as f:
        f.write('{"id": "x2", "sour')  # a crash in the middle of an append
    assert [r["id"] for r in read_manifest(tmp_path)] == ["x1"]  # the partial line is ignored
    writer = DatasetWriter(tmp_path)  # a new run cuts it off before appending again
    writer.record_scene("s/2", [{"id": "x3", "source": "s", "scene": "2"}])
    assert [r["id"] for r in read_manifest(tmp_path)] == ["x1", "x3"]
    assert writer.done_scenes() == {"s/1", "s/2"}
    writer.manifest_path.write_text('{"id": "x1"}\nnot json\n{"id": "x3"}\n')
    with pytest.raises(ValueError, match=r"manifest.jsonl:2: not a JSON line"):
        read_manifest(tmp_path)


def test_split_is_by_scene_and_deterministic():
    splits = [assign_split(f"src/scene{i}", 0.2) for i in range(2000)]
    assert 0.17 < splits.count("val") / 2000 < 0.23
    assert splits == [assign_split(f"src/scene{i}", 0.2) for i in range(2000)]
    assert assign_split("anything", 0.0) == "train"


def test_synthesize_and_stats(tmp_path):
    out = tmp_path / "synth"
    summary = convert.synthesize_dataset(out, 3, seed=5, show_progress=False)
    assert summary["samples"] == 3
    stats = dataset_stats(out)
    assert stats["samples"] == 3 and stats["by_source"] == {"synth": 3}
    assert stats["walls"] >= 12 and stats["points"] > 20_000 * 3
    again = convert.synthesize_dataset(out, 3, seed=5, show_progress=False)
    assert again["skipped"] == 3
    with pytest.raises(FileNotFoundError, match="no manifest"):
        dataset_stats(tmp_path)


def test_synthesize_with_generator_knobs(tmp_path):
    # Rectangular rooms without doors or windows: exactly 4 walls each; density sets the point count.
    synth = SynthConfig(l_shape_prob=0.0, doors=(0, 0), windows=(0, 0), boxes=(2, 2), holes=(0, 0))
    out = tmp_path / "rect"
    convert.synthesize_dataset(out, 3, seed=5, synth=synth, density=50.0, workers=2, show_progress=False)
    stats = dataset_stats(out)
    assert stats["samples"] == 3 and stats["walls"] == 12
    assert stats["doors"] == stats["windows"] == 0
    dense = tmp_path / "dense"
    convert.synthesize_dataset(dense, 3, seed=5, synth=synth, density=100.0, show_progress=False)
    ratio = dataset_stats(dense)["points"] / stats["points"]
    assert 1.8 < ratio < 2.2  # same rooms, twice the density


def test_a_rerun_with_other_generator_settings_is_refused_not_mixed(tmp_path):
    out = tmp_path / "synth"
    few = SynthConfig(density=50.0, categories=("bed", "sofa"), boxes=(1, 2))
    convert.synthesize_dataset(out, 2, seed=5, synth=few, show_progress=False)
    assert convert.synthesized_with(out)["categories"] == ["bed", "sofa"]
    assert convert.synthesize_dataset(out, 2, seed=5, synth=few, show_progress=False)["skipped"] == 2
    with pytest.raises(ArgumentError, match=r"other generator settings \(categories: \['bed', 'sofa'\] -> None"):
        convert.synthesize_dataset(out, 3, seed=5, synth=replace(few, categories=None), show_progress=False)
    assert dataset_stats(out)["samples"] == 2  # nothing was added
    assert convert.synthesized_with(tmp_path / "nothing") is None


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_removes_temp_files_a_killed_write_left(tmp_path):
    out = tmp_path / "out"
    convert.synthesize_dataset(out, 2, seed=5, density=50.0, show_progress=False)
    expected = _files(out)
    stale = [out / "pcd" / ".synth_5_000001.ply.0f3a9c.tmp", out / "layout" / ".synth_5_000001.txt.k2j4.tmp",
             out / ".split.csv.x7y8.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (out / "notes.tmp").write_text("not hidden: not ours")
    convert.synthesize_dataset(out, 2, seed=5, density=50.0, show_progress=False)
    assert _files(out) == {**expected, "notes.tmp": b"not hidden: not ours"}


def test_sharded_writer_removes_only_old_temp_files(tmp_path):
    (tmp_path / "pcd").mkdir()
    fresh, old = tmp_path / "pcd" / ".a.ply.1.tmp", tmp_path / "pcd" / ".b.ply.2.tmp"
    fresh.write_bytes(b"another machine is writing this")
    old.write_bytes(b"left by a kill two hours ago")
    two_hours_ago = os.path.getmtime(old) - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    DatasetWriter(tmp_path, shard=(0, 2))
    assert fresh.exists() and not old.exists()


class Killed(Exception):
    """Stands in for a SIGKILL between two appends."""


def test_kill_between_manifest_and_scenes_appends_never_doubles_rows(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    convert.synthesize_dataset(reference, 3, seed=5, density=50.0, show_progress=False)
    out = tmp_path / "out"
    append = store._append_jsonl

    def killed_before_third_scene_is_marked(path, rows):
        if path.name == "scenes.jsonl" and rows[0]["scene_key"].endswith("000002"):
            raise Killed
        append(path, rows)

    monkeypatch.setattr(store, "_append_jsonl", killed_before_third_scene_is_marked)
    with pytest.raises(Killed):
        convert.synthesize_dataset(out, 3, seed=5, density=50.0, show_progress=False)
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3  # the third row, unmarked
    monkeypatch.setattr(store, "_append_jsonl", append)
    convert.synthesize_dataset(out, 3, seed=5, density=50.0, show_progress=False)
    assert _files(out) == _files(reference)  # 3 manifest rows, not 4
