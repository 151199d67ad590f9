"""The Blender render worker: a long-lived process that renders scenes sent to it on stdin.

Run by the Blender environment's Python (``make blender``), never imported by ``spacelm``: it may
import only the standard library, ``bpy`` and ``numpy`` (that environment has no ``spacelm``).
``spacelm.render.blender`` starts it once per process and keeps it, so each request pays for
building the scene and rendering, not for starting Blender (~1 s) as a process per sample would.

Framing, both ways: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. The worker
answers each request with exactly one response, then waits for the next; it exits at end of input.

Requests (``op``):

- ``{"op": "ping"}`` -> ``{"ok": true, "pid": int, "blender": "5.0.1"}``.
- ``{"op": "sleep", "seconds": s}`` -> sleeps, then ``{"ok": true}``: for tests of the client's
  timeout handling only.
- ``{"op": "render", ...}`` -> ``{"ok": true, "images": {view: base64 PNG}, "seconds": {view: s}}``.
  Fields, world metres, z up, colours sRGB ``[r, g, b]`` 0-255:

  - ``engine``: ``"workbench"`` (OpenGL; studio light in perspective views, flat light in
    orthographic ones, so that plans show exact colours) or ``"cycles"`` (CPU path tracing with
    ``samples`` samples per pixel, no denoising);
  - ``floor``: ``{"polygon": [[x, y, z], ...], "color": rgb}`` or null;
  - ``surfaces``: walls, doors and windows: ``{"quad": 4 x [x, y, z], "inward": [x, y, z],
    "thickness": t, "color": rgb}``. A surface is a slab from the quad ``thickness`` metres
    outwards (a plain quad at 0). In perspective views a surface whose inner side faces away from
    the camera is hidden, so that the room reads as a dollhouse;
  - ``boxes``: ``{"center": [x, y, z], "size": [sx, sy, sz], "yaw": radians, "color": rgb}``;
  - ``outline_boxes``: draw boxes as wire frames (so that a point cloud inside them shows);
  - ``points``: null or ``{"xyz": base64 float32 (N, 3), "rgb": base64 uint8 (N, 3) or null,
    "radius": metres, "color": rgb used when rgb is null}``, drawn as small octahedra;
  - ``cameras``: ``{view: {"eye", "target", "up", "size": [w, h], "fov_deg" (vertical, null for
    orthographic), "ortho_height"}}``; image u right, v down, principal point at the centre.

  Images are RGBA with a transparent background, so that the client lays them over its own
  background colour whatever the engine.

Any exception inside a request is answered with ``{"ok": false, "error": traceback}`` and the
worker goes on serving.
"""

import base64
import json
import math
import os
import struct
import sys
import tempfile
import time
import traceback

if __name__ == "__main__":
    # Blender prints render progress on file descriptor 1. Keep a private copy of stdout for the
    # protocol and point descriptor 1 at stderr before bpy is imported, so that nothing else
    # lands in the stream the client parses.
    PROTOCOL_OUT = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

import numpy as np  # noqa: E402

try:
    import bpy
    from mathutils import Matrix
except ModuleNotFoundError:  # imported without Blender, as by pytest --doctest-modules: inert
    bpy = Matrix = None

# The framing is duplicated in spacelm.render.blender (encode_message / decode_message): this
# script runs in an environment without spacelm, so it cannot import it.
HEADER = struct.Struct(">I")

ENGINES = {"workbench": "BLENDER_WORKBENCH", "cycles": "CYCLES"}
OUTLINE_THICKNESS = 0.02  # metres, wire-frame boxes
# Box faces as indices of the corners built by box_vertices, counter-clockwise seen from outside.
BOX_FACES = np.array([[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6],
                      [3, 0, 4, 7]])
# Points are drawn as octahedra: 6 vertices at +-radius on each axis, 8 outward triangles.
OCTAHEDRON = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
OCTAHEDRON_FACES = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5],
                             [3, 1, 5], [0, 3, 5]])
# Per-vertex colours. Not "color": Cycles' Attribute node read nothing of that name (bpy 5.0.1).
COLOR_ATTRIBUTE = "Col"
CORNER_SIGNS = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                         [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], float) / 2


def read_body(stream):
    """The next framed message's bytes, or None at a clean end of input."""
    header = stream.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise EOFError("input ended inside a message header")
    (length,) = HEADER.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        raise EOFError("input ended inside a message body")
    return body


def write_message(stream, message) -> None:
    body = json.dumps(message).encode("utf-8")
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


# ---------------------------------------------------------------------------------------------
# Fixed parts of the scene, made once


def setup() -> None:
    """An empty scene with one camera, a sun, a world and one material that shows vertex colours."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.sensor_fit = "VERTICAL"
    camera.data.clip_start, camera.data.clip_end = 0.01, 1000.0
    scene.collection.objects.link(camera)
    scene.camera = camera
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy, sun.data.angle = 3.0, math.radians(10)
    sun.rotation_euler = (math.radians(25), 0.0, math.radians(-30))  # short wall shadows in plans
    scene.collection.objects.link(sun)
    scene.world = bpy.data.worlds.new("world")  # made with a node tree since Blender 5.0
    scene.world.color = (0.3, 0.3, 0.3)  # Workbench ambient
    scene.world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.4, 0.4, 0.4, 1)
    scene.render.film_transparent = True
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.compression = 15
    scene.view_settings.view_transform = "Standard"  # colours come out as sent
    scene.display.shading.color_type = "VERTEX"
    # Workbench anti-aliasing: FXAA costs ~0.15 s a 512 px view, the default 8 samples ~0.3 s.
    scene.display.render_aa = "FXAA"
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 4
    vertex_color_material()
    scene.collection.children.link(bpy.data.collections.new("content"))


def vertex_color_material():
    """The one material of every object, for Cycles: base colour from the colour attribute."""
    material = bpy.data.materials.new("vertex_color")  # made with a node tree since Blender 5.0
    nodes = material.node_tree.nodes
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_name = COLOR_ATTRIBUTE
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.8
    material.node_tree.links.new(attribute.outputs["Color"], bsdf.inputs["Base Color"])
    return material


# ---------------------------------------------------------------------------------------------
# Per-request content


def clear_content() -> None:
    """Remove the last request's objects and meshes; camera, sun, world and material stay."""
    for obj in list(bpy.data.collections["content"].objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)


def linear(rgb) -> np.ndarray:
    """sRGB 0-255 -> linear 0-1 (Blender stores linear colours; the Standard view undoes this)."""
    c = np.asarray(rgb, float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def add_mesh(name, vertices, faces, vertex_rgb):
    """A flat-shaded mesh object in the content collection, coloured per vertex (sRGB 0-255)."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.asarray(vertices, float).tolist(), [], np.asarray(faces).tolist())
    return add_object(mesh, vertex_rgb)


def add_object(mesh, vertex_rgb):
    """Colour ``mesh`` per vertex, give it the shared material and link it as content."""
    colors = np.ones((len(mesh.vertices), 4), np.float32)
    colors[:, :3] = linear(vertex_rgb)
    attribute = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color", colors.ravel())
    mesh.color_attributes.active_color = attribute  # what Workbench shows
    mesh.shade_flat()
    mesh.materials.append(bpy.data.materials["vertex_color"])
    obj = bpy.data.objects.new(mesh.name, mesh)
    bpy.data.collections["content"].objects.link(obj)
    return obj


def add_floor(floor) -> None:
    polygon = np.asarray(floor["polygon"], float)
    add_mesh("floor", polygon, [list(range(len(polygon)))], np.tile(floor["color"], (len(polygon), 1)))


def add_surface(index: int, surface):
    """A wall, door or window: its quad, or a slab ``thickness`` deep behind it.

    The slab's outer face is ``thickness`` longer at each end, a mitre that closes right-angled
    room corners (seen from above, walls meet without notches).
    """
    quad = np.asarray(surface["quad"], float)  # a, b, b + height, a + height
    thickness = float(surface["thickness"])
    if thickness <= 0:
        vertices, faces = quad, [[0, 1, 2, 3]]
    else:
        along = (quad[1] - quad[0]) / np.linalg.norm(quad[1] - quad[0])
        ends = np.array([-1, 1, 1, -1])[:, None] * along
        outer = quad - thickness * np.asarray(surface["inward"], float) + thickness * ends
        vertices = np.concatenate([quad, outer])
        faces = [[0, 1, 2, 3], [5, 4, 7, 6], [0, 4, 5, 1], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 4, 0]]
    obj = add_mesh(f"surface_{index}", vertices, faces, np.tile(surface["color"], (len(vertices), 1)))
    obj["inward"] = surface["inward"]
    obj["centre"] = quad.mean(axis=0).tolist()


def box_vertices(boxes) -> np.ndarray:
    """``(N * 8, 3)`` corners of yaw-rotated boxes: bottom face counter-clockwise, then top."""
    centre = np.array([b["center"] for b in boxes], float)
    size = np.array([b["size"] for b in boxes], float)
    yaw = np.array([b["yaw"] for b in boxes], float)
    local = CORNER_SIGNS[None] * size[:, None]  # (N, 8, 3)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return (np.stack([x, y, local[..., 2]], axis=-1) + centre[:, None]).reshape(-1, 3)


def add_boxes(boxes, outline: bool) -> None:
    if not boxes:
        return
    faces = (BOX_FACES[None] + 8 * np.arange(len(boxes))[:, None, None]).reshape(-1, 4)
    colors = np.repeat([b["color"] for b in boxes], 8, axis=0)
    obj = add_mesh("boxes", box_vertices(boxes), faces, colors)
    if outline:
        wire = obj.modifiers.new("outline", "WIREFRAME")
        wire.thickness, wire.use_even_offset = OUTLINE_THICKNESS, False


def add_points(points) -> None:
    """Points as tiny octahedra in one vertex-coloured mesh.

    Not a point cloud object: Workbench draws those in one material colour, and Cycles renders
    both at about the same speed.
    """
    xyz = np.frombuffer(base64.b64decode(points["xyz"]), np.float32).reshape(-1, 3)
    if points["rgb"] is None:
        rgb = np.tile(points["color"], (len(xyz), 1))
    else:
        rgb = np.frombuffer(base64.b64decode(points["rgb"]), np.uint8).reshape(-1, 3)
    vertices = (xyz[:, None] + float(points["radius"]) * OCTAHEDRON[None]).reshape(-1, 3)
    triangles = (OCTAHEDRON_FACES[None] + 6 * np.arange(len(xyz))[:, None, None]).ravel()
    mesh = bpy.data.meshes.new("points")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(len(triangles))
    mesh.loops.foreach_set("vertex_index", triangles.astype(np.int32))
    mesh.polygons.add(len(triangles) // 3)
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(triangles), 3, dtype=np.int32))
    mesh.update()
    add_object(mesh, np.repeat(rgb, len(OCTAHEDRON), axis=0))


# ---------------------------------------------------------------------------------------------
# Cameras and rendering


def camera_matrix(eye, target, up) -> Matrix:
    """Camera-to-world: Blender cameras look down their -z with +y up in the image."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    image_up = np.cross(right, forward)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, image_up, -forward, eye
    return Matrix(matrix.tolist())


def set_camera(view) -> None:
    scene = bpy.context.scene
    camera = scene.camera
    camera.matrix_world = camera_matrix(view["eye"], view["target"], view["up"])
    if view["fov_deg"] is None:
        camera.data.type = "ORTHO"
        camera.data.ortho_scale = float(view["ortho_height"])
    else:
        camera.data.type = "PERSP"
        camera.data.angle_y = math.radians(float(view["fov_deg"]))
    scene.render.resolution_x, scene.render.resolution_y = (int(v) for v in view["size"])
    # Flat light keeps the plan's colours exact; studio light gives perspective views depth.
    scene.display.shading.light = "FLAT" if view["fov_deg"] is None else "STUDIO"
    eye = np.asarray(view["eye"], float)
    for obj in bpy.data.collections["content"].objects:
        if "inward" in obj:
            inward = np.asarray(obj["inward"], float)
            if view["fov_deg"] is None:  # orthographic: only the direction matters
                towards_eye = eye - np.asarray(view["target"], float)
            else:
                towards_eye = eye - np.asarray(obj["centre"], float)
            obj.hide_render = float(towards_eye @ inward) < -1e-9


def render_views(request, directory: str) -> dict:
    if request["engine"] not in ENGINES:
        raise ValueError(f"unknown engine {request['engine']!r}; expected one of {sorted(ENGINES)}")
    scene = bpy.context.scene
    scene.render.engine = ENGINES[request["engine"]]
    scene.cycles.samples = int(request.get("samples", 16))
    clear_content()
    if request.get("floor"):
        add_floor(request["floor"])
    for index, surface in enumerate(request.get("surfaces", [])):
        add_surface(index, surface)
    add_boxes(request.get("boxes", []), bool(request.get("outline_boxes")))
    if request.get("points"):
        add_points(request["points"])
    images, seconds = {}, {}
    for index, (name, view) in enumerate(request["cameras"].items()):
        start = time.perf_counter()
        set_camera(view)
        scene.render.filepath = os.path.join(directory, f"{index}.png")
        bpy.ops.render.render(write_still=True)
        with open(scene.render.filepath, "rb") as file:
            images[name] = base64.b64encode(file.read()).decode("ascii")
        seconds[name] = time.perf_counter() - start
    return {"ok": True, "images": images, "seconds": seconds}


def handle(request, directory: str) -> dict:
    op = request.get("op")
    if op == "ping":
        return {"ok": True, "pid": os.getpid(), "blender": bpy.app.version_string}
    if op == "sleep":
        time.sleep(float(request["seconds"]))
        return {"ok": True}
    if op == "render":
        return render_views(request, directory)
    raise ValueError(f"unknown op {op!r}; expected 'ping', 'sleep' or 'render'")


def main() -> None:
    setup()
    stdin = sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="spacelm-blender-") as directory:
        while (body := read_body(stdin)) is not None:
            try:
                response = handle(json.loads(body.decode("utf-8")), directory)
            except Exception:
                response = {"ok": False, "error": traceback.format_exc()}
            write_message(PROTOCOL_OUT, response)


if __name__ == "__main__":
    main()
