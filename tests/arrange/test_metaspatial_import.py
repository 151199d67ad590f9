"""MetaSpatial import: hand-written IDesign scene graphs, synthetic rows, and the real samples."""

import json
import math
import re

import pytest

from spacelm.arrange.metaspatial_import import (
    read_parquet,
    read_room_descriptions,
    task_from_row,
    task_from_scene_graph,
)
from spacelm.arrange.physics import check_layouts
from spacelm.arrange.rewards import FormatReward
from spacelm.arrange.task import Relation, TaskError


def priors(length, width, height):
    """IDesign's ``get_room_priors``: walls of zero thickness, floor and ceiling."""
    def prior(name, kind, x, y, z, size, angle):
        return {"new_object_id": name, "itemType": kind, "position": {"x": x, "y": y, "z": z},
                "size_in_meters": dict(zip(("length", "width", "height"), size)),
                "rotation": {"z_angle": angle}}
    x, y, z = length / 2, width / 2, height / 2
    return [prior("south_wall", "wall", x, 0, z, (length, 0.0, height), 0.0),
            prior("north_wall", "wall", x, width, z, (length, 0.0, height), 180.0),
            prior("east_wall", "wall", length, y, z, (width, 0.0, height), 270.0),
            prior("west_wall", "wall", 0, y, z, (width, 0.0, height), 90.0),
            prior("middle of the room", "floor", x, y, 0, (length, width, 0.0), 0.0),
            prior("ceiling", "ceiling", x, y, height, (length, width, 0.0), 0.0)]


def idesign_object(object_id, size, facing, angle, elements=(), objects=(), on_floor=True):
    return {"new_object_id": object_id, "style": "Modern", "material": "Oak",
            "size_in_meters": dict(zip(("length", "width", "height"), size)),
            "is_on_the_floor": on_floor, "facing": facing,
            "placement": {"room_layout_elements": [{"layout_element_id": e, "preposition": p}
                                                   for e, p in elements],
                          "objects_in_room": [{"object_id": o, "preposition": p, "is_adjacent": a}
                                              for o, p, a in objects]},
            "rotation": {"z_angle": angle}, "cluster": {"constraint_area": {"x_neg": 0.0}}}


GRAPH = [
    idesign_object("sofa_1", (2.0, 0.9, 0.8), "north_wall", 0.0, [("south_wall", "on")]),
    idesign_object("coffee_table_1", (1.0, 0.6, 0.45), "sofa_1", 180.0,
                   objects=[("sofa", "in front", True)]),  # IDesign resolves "sofa" to sofa_1
    idesign_object("bookshelf_1", (1.2, 0.4, 2.0), "east_wall", 90.0,
                   [("west_wall", "on"), ("north_wall", "in the corner"), ("west_wall", "in the corner")],
                   [("middle of the room", "on", True)]),  # dropped, as IDesign's preprocessing does
    idesign_object("pendant_lamp_1", (0.5, 0.5, 0.6), "middle of the room", 0.0, [("ceiling", "on")],
                   [("coffee_table_1", "above", False)], on_floor=False),
] + priors(5, 4, 2.8)


def test_scene_graph_to_task():
    task = task_from_scene_graph(GRAPH, task_id="room_7", preference="a reading den")
    assert (task.room.length, task.room.width, task.room.height) == (5, 4, 2.8)
    sofa, table, shelf, lamp = task.objects
    assert sofa.size == (2.0, 0.9, 0.8) and sofa.style == "Modern" and sofa.facing == "north_wall"
    assert sofa.relations == (Relation("against wall", "south_wall"),)
    assert table.relations == (Relation("in front", "sofa_1", True),)
    assert shelf.relations == (Relation("against wall", "west_wall"),
                               Relation("in the corner", "north_wall"),
                               Relation("in the corner", "west_wall"))
    assert lamp.relations == (Relation("on", "ceiling"), Relation("above", "coffee_table_1"))
    assert not lamp.on_floor
    # IDesign measures z_angle clockwise from north; ours is counter-clockwise.
    assert [o.rotation for o in task.objects] == [0.0, 180.0, 270.0, 0.0]


def test_converted_rotations_agree_with_the_relations():
    """IDesign's own solution, written with the converted rotations, satisfies every check."""
    task = task_from_scene_graph(GRAPH, task_id="room_7", preference="")
    layout = [[2.5, 0.45, 0.4, 0, 2.0, 0.9, 0.8],                         # sofa on the south wall
              [2.5, 1.2, 0.225, math.pi, 1.0, 0.6, 0.45],                 # table right in front
              [0.2, 3.4, 1.0, math.radians(270), 1.2, 0.4, 2.0],           # shelf, north-west corner
              [2.5, 1.2, 2.5, 0, 0.5, 0.5, 0.6]]                          # lamp hangs over the table
    report = check_layouts(task, layout)
    assert report.satisfied.all(), [c for c, ok in zip(report.constraints, report.satisfied[0]) if not ok]
    assert not report.colliding.any() and not report.out_of_bounds.any() and not report.floating.any()


@pytest.mark.parametrize("graph, message", [
    (GRAPH[:-1], "expected the 6 room priors"),
    (GRAPH[:1] + [{**GRAPH[1], "placement": {"objects_in_room": [
        {"object_id": "piano", "preposition": "behind", "is_adjacent": False}]}}] + GRAPH[4:],
     "'behind' refers to 'piano', which is not in the scene graph"),
    (GRAPH[:1] + [{**GRAPH[1], "placement": {"room_layout_elements": [
        {"layout_element_id": "west_wall", "preposition": "behind"}]}}] + GRAPH[4:],
     "unsupported room layout relation 'behind' 'west_wall'"),
    ([{k: v for k, v in GRAPH[0].items() if k != "size_in_meters"}] + GRAPH[4:],
     "scene graph object 0: missing or malformed field 'size_in_meters'"),
])
def test_scene_graph_errors(graph, message):
    with pytest.raises(TaskError, match=re.escape(message)):
        task_from_scene_graph(graph, task_id="r", preference="")


def test_room_size_must_agree_with_the_priors():
    with pytest.raises(TaskError, match="disagrees with the priors"):
        task_from_scene_graph(GRAPH, task_id="r", preference="", room=(6, 4, 2.8))


def metaspatial_problem(graph, room, preference):
    """A prompt laid out as MetaSpatial's ``hf_data_curation.py`` writes it."""
    return (f"<image>\n    ## Task Description\n    You are an intelligent assistant...\n"
            f"    ## Room Information\n    - Room Dimensions: {room} (Length meter × Width meter × "
            f"Height meter).\n    ## User Preferences\n    {preference}\n    ## Expected Output\n"
            '    <answer>\n    {"new_object_id": "sectional_sofa_1","x": 1.0}}\n    </answer>\n'
            "    ## Input JSON Data:\n    " + json.dumps(graph, indent=2))


def test_row_to_task():
    answer = json.dumps({"room_name": "room_7", "user_preference": "a reading den",
                         "size_of_room": {"x": 5, "y": 4, "z": 2.8}})
    problem = metaspatial_problem(GRAPH, {"x": 5, "y": 4, "z": 2.8}, "a reading den")
    task = task_from_row({"problem": problem, "answer": answer})
    assert task == task_from_scene_graph(GRAPH, task_id="room_7", preference="a reading den")
    with pytest.raises(TaskError, match="answer: not MetaSpatial's room JSON"):
        task_from_row({"problem": problem, "answer": "{}"})


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    good = {"problem": metaspatial_problem(GRAPH, {}, "den"), "images": [{"bytes": b"\x89PNG", "path": None}],
            "answer": json.dumps({"room_name": "room_7", "user_preference": "den",
                                  "size_of_room": {"x": 5, "y": 4, "z": 2.8}})}
    bad = {**good, "problem": "<image>tensor([151643, ...])"}
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist([good, bad]), path)
    result = read_parquet(path, image_dir=tmp_path / "images")
    assert [t.id for t in result.tasks] == ["room_7"]
    assert (tmp_path / "images" / "room_7.png").read_bytes() == b"\x89PNG"
    assert result.tasks[0].image == str(tmp_path / "images" / "room_7.png")
    assert result.failures[0].where == "train.parquet, row 1"
    assert "token-id tensor repr" in result.failures[0].reason


def test_real_parquet_sample(real_dir):
    """The sample is MetaSpatial's multi-turn debug artifact: no row carries a scene graph."""
    pytest.importorskip("pyarrow.parquet")
    result = read_parquet(real_dir / "data.parquet")
    assert len(result.tasks) == 0 and len(result.failures) == 4
    assert all("token-id tensor repr" in f.reason for f in result.failures)


def test_real_completions_reproduce_metaspatial_format_rewards(real_dir, make_task):
    """Each row holds a real model answer and the reward MetaSpatial gave it (0.5 F when F < 1)."""
    pq = pytest.importorskip("pyarrow.parquet")
    rows = pq.read_table(real_dir / "data.parquet", columns=["problem"]).to_pylist()
    checked = 0
    for row in rows:
        text = row["problem"]
        response = text.split("---Previous Step Response---\n", 1)[1].split("\n---Previous Reward---")[0]
        recorded = float(text.split("---Previous Reward---\n", 1)[1].split("\n")[0])
        ids = sorted(set(re.findall(r'"new_object_id":\s*"([^"]+)"', response)))
        # Their tasks are lost; any task with more objects than the answer gives the same tier.
        task = make_task([{"id": i} for i in ids + ["missing_object_1"]])
        tier = FormatReward()(["p"], [response], task=[task])[0]
        assert 0.5 * tier == pytest.approx(recorded, abs=1e-6)
        checked += 1
    assert checked == 4


def test_real_room_descriptions(real_dir):
    rooms, failures = read_room_descriptions(real_dir / "generated_room_descriptions.json")
    assert len(rooms) == 9741 and [f.where.split()[-1] for f in failures] == ["9101", "9107", "9110"]
    assert rooms[0].length == 6 and rooms[0].description.startswith("A cozy library")
