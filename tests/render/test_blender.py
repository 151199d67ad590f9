"""The Blender backend. Tests that render need ``make blender`` and are skipped without it."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import shapely

pytest.importorskip("PIL")

from spacelm.render import blender, render
from spacelm.render.blender import (
    BlenderWorker,
    blender_python,
    decode_message,
    encode_message,
    render_blender,
)
from spacelm.render.scene import (
    BACKGROUND,
    FLOOR,
    room_shell,
    scene_bounds,
    view_cameras,
)
from spacelm.scene import Box, Layout
from spacelm.scene.geometry import box_corners

RED = (220, 20, 20)
COLORS = {"red_box": RED}
RED_BOX = Box("red_box", 3.0, 0.75, 0.4, 0.3, 0.8, 0.6, 0.8)
LAYOUT = Layout(boxes=[RED_BOX])
ROOM = (4, 3, 2.5)  # a box room [0, 4] x [0, 3] x [0, 2.5]
SIZE = (128, 128)


@pytest.fixture(scope="module")
def blender_env():
    try:
        return blender_python()
    except RuntimeError as error:
        pytest.skip(f"no Blender environment: {error}")


@pytest.fixture(scope="module")
def worker(blender_env):
    with BlenderWorker() as worker:
        yield worker


def scene(views=("corner", "top"), size=SIZE):
    shell = room_shell(LAYOUT, ROOM)
    return shell, view_cameras(scene_bounds(shell, LAYOUT), views, size)


def close(rgb, expected, tolerance=4) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected))


def is_red(rgb) -> bool:
    r, g, b = rgb
    return r > 80 and r > 2.5 * g and r > 2.5 * b


# ---------------------------------------------------------------------------------------------
# Without bpy


def test_framing_round_trips():
    message = {"op": "render", "cameras": {"top": {"size": [2, 3]}}, "text": "élan", "x": 0.1}
    frame = encode_message(message)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_message(frame) == message
    with pytest.raises(ValueError, match="frame header"):
        decode_message(frame[:-1])


def test_missing_environment_names_make_blender(monkeypatch, tmp_path):
    missing = tmp_path / "no-env" / "bin" / "python"
    monkeypatch.setenv(blender.ENV_VAR, str(missing))
    with pytest.raises(RuntimeError, match="make blender") as error:
        blender_python()
    assert str(missing) in str(error.value) and blender.ENV_VAR in str(error.value)
    with pytest.raises(RuntimeError, match="make blender"):
        BlenderWorker(python=missing).request({"op": "ping"})


def test_unknown_engine_is_refused_before_any_process_starts():
    with pytest.raises(ValueError, match="unknown engine"):
        render(LAYOUT, room_size=ROOM, backend="blender", engine="eevee")


# ---------------------------------------------------------------------------------------------
# With the Blender environment


def test_workbench_pixels(worker):
    shell, cameras = scene()
    images = render_blender(shell, LAYOUT, cameras, None, None, COLORS, worker=worker)
    assert {name: image.size for name, image in images.items()} == {"corner": SIZE, "top": SIZE}
    uv, _ = cameras["corner"].project([RED_BOX.x, RED_BOX.y, RED_BOX.z])
    assert is_red(images["corner"].getpixel(tuple(int(v) for v in uv)))
    # The plan is flat-lit: the box shows its exact colour at its centre and is red where its
    # footprint projects (less a blurred rim), the floor elsewhere, the background outside.
    top = np.asarray(images["top"])
    u, v = cameras["top"].project([RED_BOX.x, RED_BOX.y, RED_BOX.z])[0].astype(int)
    assert close(top[v, u], RED)
    footprint = shapely.Polygon(cameras["top"].project(box_corners(LAYOUT.box_array())[0, :4])[0])
    v, u = np.mgrid[:SIZE[1], :SIZE[0]] + 0.5
    inside = shapely.contains_xy(footprint, u, v)
    red = np.apply_along_axis(is_red, -1, top)
    assert (red & inside).sum() / (red | inside).sum() > 0.9
    empty_floor = cameras["top"].project([0.5, 2.5, 0.0])[0].astype(int)
    assert close(top[empty_floor[1], empty_floor[0]], FLOOR)
    assert tuple(top[1, 1]) == BACKGROUND


def test_cycles_box_is_red(worker):
    shell, cameras = scene(("corner",), (64, 64))
    image = render_blender(shell, LAYOUT, cameras, None, None, COLORS, engine="cycles", samples=4,
                           worker=worker)["corner"]
    u, v = (int(c) for c in cameras["corner"].project([RED_BOX.x, RED_BOX.y, RED_BOX.z])[0])
    patch = np.asarray(image)[v - 1:v + 2, u - 1:u + 2].reshape(-1, 3).mean(axis=0)
    assert is_red(patch)


def test_points_cover_the_floor(worker):
    x, y = np.meshgrid(np.arange(0.01, 4, 0.02), np.arange(0.01, 3, 0.02))
    xyz = np.column_stack([x.ravel(), y.ravel(), np.full(x.size, 0.01)])
    rgb = np.tile(np.array([30, 200, 30], np.uint8), (len(xyz), 1))
    shell, cameras = scene(("top",))
    top = np.asarray(render_blender(shell, LAYOUT, cameras, xyz, rgb, COLORS, worker=worker)["top"])
    u, v = cameras["top"].project([0.5, 2.5, 0.0])[0].astype(int)
    assert close(top[v, u], (30, 200, 30), tolerance=10)
    u, v = cameras["top"].project([RED_BOX.x, RED_BOX.y, 0.0])[0].astype(int)
    assert not is_red(top[v, u])  # boxes are outlines over a scan


def test_render_reuses_one_worker(blender_env):
    first = render(LAYOUT, size=SIZE, room_size=ROOM, backend="blender", colors=COLORS)
    pid = blender.shared_worker().pid
    second = render(LAYOUT, size=SIZE, room_size=ROOM, backend="blender", colors=COLORS)
    assert blender.shared_worker().pid == pid
    assert all(first[k].tobytes() == second[k].tobytes() for k in first)


def test_worker_killed_between_requests_is_restarted(blender_env):
    shell, cameras = scene(("top",))
    with BlenderWorker() as worker:
        first = worker.request({"op": "ping"})["pid"]
        os.kill(first, signal.SIGKILL)
        while worker._process.poll() is None:
            time.sleep(0.01)
        image = render_blender(shell, LAYOUT, cameras, None, None, COLORS, worker=worker)["top"]
        assert worker.pid != first
        u, v = cameras["top"].project([RED_BOX.x, RED_BOX.y, RED_BOX.z])[0].astype(int)
        assert close(image.getpixel((int(u), int(v))), RED)


def test_worker_killed_during_a_request_is_restarted_and_retried(blender_env):
    with BlenderWorker() as worker:
        first = worker.request({"op": "ping"})["pid"]
        threading.Timer(0.5, os.kill, (first, signal.SIGKILL)).start()
        assert worker.request({"op": "sleep", "seconds": 1.0}) == {"ok": True}
        assert worker.pid != first


def test_hung_worker_is_restarted_then_reported(blender_env):
    with BlenderWorker() as worker:
        first = worker.request({"op": "ping"})["pid"]
        with pytest.raises(RuntimeError, match="twice") as error:
            worker.request({"op": "sleep", "seconds": 60}, timeout=2)
        assert str(error.value).count("did not answer within 2 s") == 2
        assert worker.request({"op": "ping"})["pid"] not in (first, None)


def test_worker_error_is_reported_and_worker_survives(worker):
    pid = worker.request({"op": "ping"})["pid"]
    with pytest.raises(RuntimeError, match="unknown op"):
        worker.request({"op": "paint"})
    assert worker.request({"op": "ping"})["pid"] == pid
