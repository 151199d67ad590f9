"""The Blender backend: renders through one long-lived Blender worker process.

bpy pins numpy<2, so Blender lives in its own environment (``make blender`` makes ``.venv-blender``)
and runs ``blender_worker.py`` as a child process that speaks length-prefixed JSON on its stdin and
stdout (the protocol is in that file's docstring). This module turns a ``Shell``, a ``Layout`` and
``Camera`` objects into a request, and the PNGs that come back into RGB images.

One worker per process, started on first use and kept: starting Blender costs about a second, a
Workbench view a fraction of one. A worker that dies or exceeds the request timeout is killed,
restarted and sent the request once more; a second failure raises ``RuntimeError``.

Compared with the built-in backend: walls are slabs ``thickness`` deep behind their quad (10 cm
where unknown); the top view has no text labels and no doors or windows (vertical quads, edge-on
from above); points are small octahedra about two pixels wide.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import math
import os
import select
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from spacelm.render.scene import (
    BACKGROUND,
    DOOR,
    FLOOR,
    POINT,
    WALL,
    WINDOW,
    Camera,
    Color,
    Shell,
    label_color,
)
from spacelm.scene.layout import Layout

ENGINES = ("workbench", "cycles")
ENV_VAR = "SPACELM_BLENDER_PYTHON"
WORKER_SCRIPT = Path(__file__).with_name("blender_worker.py")
REPO_ENV_PYTHON = Path(__file__).resolve().parents[3] / ".venv-blender" / "bin" / "python"
TIMEOUT = 120.0  # seconds per request, including the worker's start (~1-2 s)
MAX_POINTS = 50_000  # larger clouds are thinned with a fixed stride
DEFAULT_WALL_THICKNESS = 0.1  # metres, for walls of unknown thickness
OPENING_OFFSET = 0.005  # metres: doors and windows stand this far into the room, over their wall

# Framing, both ways: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. The worker
# repeats these few lines because it runs without spacelm.
HEADER = struct.Struct(">I")


def encode_message(message: Mapping) -> bytes:
    """One framed message: length header plus JSON body.

    >>> decode_message(encode_message({"op": "ping"}))
    {'op': 'ping'}
    """
    body = json.dumps(message).encode("utf-8")
    return HEADER.pack(len(body)) + body


def decode_message(frame: bytes) -> dict:
    """The message in one whole frame; the header must match the body's length."""
    (length,) = HEADER.unpack(frame[:HEADER.size])
    if length != len(frame) - HEADER.size:
        raise ValueError(f"frame header says {length} bytes, body has {len(frame) - HEADER.size}")
    return json.loads(frame[HEADER.size:].decode("utf-8"))


def blender_python(python: str | os.PathLike | None = None) -> Path:
    """The Blender environment's Python: ``python``, else $SPACELM_BLENDER_PYTHON, else the repo's."""
    if python is not None:
        path, source = Path(python), "given"
    elif os.environ.get(ENV_VAR):
        path, source = Path(os.environ[ENV_VAR]), f"from ${ENV_VAR}"
    else:
        path, source = REPO_ENV_PYTHON, "the repository's .venv-blender"
    if not path.exists():
        raise RuntimeError(f"the Blender backend needs a Python with bpy, and {path} ({source}) does "
                           f"not exist: run `make blender` in the spacelm repository, or set "
                           f"${ENV_VAR} to the Python of an environment with bpy 5.0.1 and numpy<2")
    return path


class WorkerFailure(Exception):
    """The worker died or did not answer in time; the client restarts it."""


class BlenderWorker:
    """A Blender worker process: started on the first request, reused, restarted once on failure.

    ``timeout`` bounds each request in seconds. Requests are serialised with a lock, since two
    interleaved on one pipe would corrupt both. Use as a context manager, or call ``close()``.
    """

    def __init__(self, python: str | os.PathLike | None = None, timeout: float = TIMEOUT):
        self.python = python
        self.timeout = timeout
        self._process: subprocess.Popen | None = None
        self._log = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The worker's process id, None before the first request or after ``close()``."""
        return None if self._process is None else self._process.pid

    def request(self, message: Mapping, timeout: float | None = None) -> dict:
        """Send one request and return the worker's response (``ok`` true).

        A crash or a timeout kills the worker, restarts it and sends the request again once. An
        error the worker reports (a bad request, a failed render) raises at once: resending it
        would fail the same way.
        """
        frame = encode_message(message)
        timeout = self.timeout if timeout is None else timeout
        failures = []
        with self._lock:
            for _ in range(2):
                self._start()
                try:
                    response = self._exchange(frame, timeout)
                except WorkerFailure as failure:
                    failures.append(f"{failure}; its log ends: {self._log_tail()!r}")
                    self._kill()
                    continue
                if not response.get("ok"):
                    raise RuntimeError(f"the Blender worker failed on op {message.get('op')!r}:\n"
                                       f"{response.get('error')}")
                return response
        raise RuntimeError(f"the Blender worker failed on op {message.get('op')!r} twice, "
                           f"restarted in between. First: {failures[0]}. Then: {failures[1]}")

    def close(self) -> None:
        """Stop the worker: end of input lets it exit; it is killed if that takes over 5 s."""
        with self._lock:
            if self._process is None:
                return
            self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._kill()

    def __enter__(self) -> BlenderWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._kill()  # a worker that died between requests
        python = blender_python(self.python)
        self._log = tempfile.TemporaryFile()  # Blender is chatty: keep its output for error messages
        self._process = subprocess.Popen([str(python), "-u", str(WORKER_SCRIPT)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log)
        os.set_blocking(self._process.stdin.fileno(), False)

    def _exchange(self, frame: bytes, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        self._write(frame, deadline, timeout)
        header = self._read(HEADER.size, deadline, timeout)
        (length,) = HEADER.unpack(header)
        return decode_message(header + self._read(length, deadline, timeout))

    def _write(self, data: bytes, deadline: float, timeout: float) -> None:
        fd, view = self._process.stdin.fileno(), memoryview(data)
        while view:
            if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                raise WorkerFailure(f"did not take the request within {timeout:g} s")
            try:
                view = view[os.write(fd, view):]
            except BrokenPipeError:
                raise WorkerFailure(self._exit_description()) from None

    def _read(self, n: int, deadline: float, timeout: float) -> bytes:
        fd, chunks = self._process.stdout.fileno(), []
        while n > 0:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise WorkerFailure(f"did not answer within {timeout:g} s")
            chunk = os.read(fd, n)
            if not chunk:
                raise WorkerFailure(self._exit_description())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _exit_description(self) -> str:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "closed its output but did not exit"
        return f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"

    def _log_tail(self, chars: int = 2000) -> str:
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - chars))
        return self._log.read().decode("utf-8", "replace").strip()

    def _kill(self) -> None:
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process.stdin.close()
        self._process.stdout.close()
        self._log.close()
        self._process = self._log = None


_WORKERS: dict[int, BlenderWorker] = {}


def shared_worker() -> BlenderWorker:
    """This process's worker, made on first use (a forked child makes its own)."""
    worker = _WORKERS.get(os.getpid())
    if worker is None:
        worker = _WORKERS[os.getpid()] = BlenderWorker()
        atexit.register(worker.close)
    return worker


def render_blender(shell: Shell, layout: Layout, cameras: Mapping[str, Camera],
                   points_xyz: np.ndarray | None, points_rgb: np.ndarray | None,
                   colors: Mapping[str, Color] | None, engine: str = "workbench", samples: int = 16,
                   worker: BlenderWorker | None = None) -> dict:
    """``{view: RGB PIL image}`` of the scene, rendered by ``worker`` (default: the shared one)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    request = scene_request(shell, layout, cameras, points_xyz, points_rgb, colors)
    request.update(engine=engine, samples=int(samples))
    response = (worker or shared_worker()).request(request)
    return {name: _over_background(base64.b64decode(png)) for name, png in response["images"].items()}


def scene_request(shell: Shell, layout: Layout, cameras: Mapping[str, Camera],
                  points_xyz: np.ndarray | None, points_rgb: np.ndarray | None,
                  colors: Mapping[str, Color] | None) -> dict:
    """The worker's ``render`` request (without engine) for a scene and its cameras."""
    thickness = np.where(shell.wall_thickness > 0, shell.wall_thickness, DEFAULT_WALL_THICKNESS)
    surfaces = [_surface(quad, inward, t, WALL)
                for quad, inward, t in zip(shell.walls, shell.walls_inward, thickness)]
    for quads, inwards, color in ((shell.doors, shell.doors_inward, DOOR),
                                  (shell.windows, shell.windows_inward, WINDOW)):
        surfaces += [_surface(quad + OPENING_OFFSET * inward, inward, 0.0, color)
                     for quad, inward in zip(quads, inwards)]
    boxes = [{"center": [box.x, box.y, box.z], "size": [box.scale_x, box.scale_y, box.scale_z],
              "yaw": box.angle_z, "color": list(label_color(box.label, colors))}
             for box in layout.boxes]
    floor = {"polygon": shell.floor.tolist(), "color": list(FLOOR)} if len(shell.floor) >= 3 else None
    return {"op": "render", "floor": floor, "surfaces": surfaces, "boxes": boxes,
            "outline_boxes": points_xyz is not None,
            "points": _points(points_xyz, points_rgb, _point_radius(cameras.values())),
            "cameras": {name: _camera(camera) for name, camera in cameras.items()}}


def _surface(quad: np.ndarray, inward: np.ndarray, thickness: float, color: Color) -> dict:
    return {"quad": quad.tolist(), "inward": inward.tolist(), "thickness": float(thickness),
            "color": list(color)}


def _points(xyz: np.ndarray | None, rgb: np.ndarray | None, radius: float) -> dict | None:
    """Points as base64 arrays, thinned to at most MAX_POINTS with a fixed stride (deterministic)."""
    if xyz is None:
        return None
    step = max(1, math.ceil(len(xyz) / MAX_POINTS))
    return {"xyz": base64.b64encode(np.ascontiguousarray(xyz[::step], "<f4").tobytes()).decode(),
            "rgb": None if rgb is None else
            base64.b64encode(np.ascontiguousarray(rgb[::step], np.uint8).tobytes()).decode(),
            "radius": radius, "color": list(POINT)}


def _point_radius(cameras) -> float:
    """One pixel at the target of the coarsest view, metres: points are ~2 px wide, as in builtin."""
    sizes = []
    for camera in cameras:
        height = camera.ortho_height
        if camera.fov_deg is not None:
            distance = math.dist(camera.eye, camera.target)
            height = 2 * distance * math.tan(math.radians(camera.fov_deg) / 2)
        sizes.append(height / camera.size[1])
    return max(sizes, default=0.0)


def _camera(camera: Camera) -> dict:
    return {"eye": list(camera.eye), "target": list(camera.target), "up": list(camera.up),
            "size": list(camera.size), "fov_deg": camera.fov_deg, "ortho_height": camera.ortho_height}


def _over_background(png: bytes):
    """The worker's RGBA PNG laid over BACKGROUND, as RGB (Pillow is imported only here)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGBA")
    background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, image).convert("RGB")
