"""A self-contained HTML viewer: a point cloud with a layout and a prediction, in one offline file.

The page embeds its data as base64 typed arrays in a JSON block, plus a small hand-written WebGL
viewer. It needs no CDN and no network when viewed, and opens in any browser with WebGL. Drag to
orbit, shift-drag or right-drag to pan, and use the wheel to zoom.

Colours: ground-truth boxes green, predicted entities (walls, doors, windows, boxes) red. GT walls
are light grey, GT doors brown and GT windows blue. Box labels float above each box, in its colour.
A point cloud without colours is shaded grey by height. The same content goes to rerun through
``spacelm.viz.rerun``, which reuses this module's colours and ``subsample_points``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path

import numpy as np

from spacelm.io import atomic_write_text
from spacelm.points import rgb_to_uint8
from spacelm.render.scene import BOX_EDGES
from spacelm.scene.geometry import box_corners, opening_quads, wall_quads
from spacelm.scene.layout import Layout

GT_BOX = (60, 200, 90)
PRED = (240, 80, 60)
WALL = (200, 200, 200)
DOOR = (190, 130, 70)
WINDOW = (90, 170, 240)
QUAD_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
SEED = 0  # subsampling is fixed: the same file gives the same picture


def subsample_points(points, rgb=None, max_points: int | None = 200_000,
                     seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points, drawn without replacement with a fixed seed, in input order.

    ``points``: ``(N, 3)`` metres or None; ``rgb``: ``(N, 3)`` colours (uint8, or floats in [0, 1]) or
    None, which shades the points grey by height. Returns ``(M, 3) float32`` and ``(M, 3) uint8``.

    >>> xyz, rgb = subsample_points(np.zeros((10, 3)), max_points=4)
    >>> xyz.shape, rgb.dtype.name
    ((4, 3), 'uint8')
    """
    if points is None:
        if rgb is not None:
            raise ValueError("rgb was given without points")
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    xyz = np.asarray(points, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {xyz.shape}")
    if rgb is None:
        z = xyz[:, 2]
        low, span = (z.min(), max(float(np.ptp(z)), 1e-6)) if len(z) else (0.0, 1.0)
        rgb = np.repeat((90 + 140 * (z - low) / span).astype(np.uint8)[:, None], 3, axis=1)
    rgb = rgb_to_uint8(rgb)
    if rgb.shape != xyz.shape:
        raise ValueError(f"rgb must have shape {xyz.shape} like the points, got {rgb.shape}")
    if max_points is not None and len(xyz) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xyz), max_points, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    return xyz, rgb


def layout_segments(layout: Layout, predicted: bool) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Line segments ``(S, 2, 3) float32`` and colours ``(S, 3) uint8`` of a layout, plus labels.

    Walls, doors and windows are quad outlines and boxes are their 12 edges. Each label is
    ``{"text", "at": [x, y, z] (top centre of the box), "color": "#rrggbb"}``.
    """
    groups = [(wall_quads(layout), QUAD_EDGES, WALL),
              (opening_quads(layout, "door"), QUAD_EDGES, DOOR),
              (opening_quads(layout, "window"), QUAD_EDGES, WINDOW),
              (box_corners(layout.box_array()), BOX_EDGES, GT_BOX)]
    segments, colors = [], []
    for corners, edges, color in groups:
        lines = corners[:, edges].reshape(-1, 2, 3)
        segments.append(lines)
        colors.append(np.tile(np.array(PRED if predicted else color, np.uint8), (len(lines), 1)))
    box_color = css_color(PRED if predicted else GT_BOX)
    labels = [{"text": b.label, "at": [b.x, b.y, b.z + b.scale_z / 2], "color": box_color}
              for b in layout.boxes]
    return np.concatenate(segments).astype(np.float32), np.concatenate(colors), labels


def write_html(path: str | os.PathLike, *, points=None, rgb=None, layout: Layout | None = None,
               pred: Layout | None = None, max_points: int | None = 200_000,
               title: str = "spacelm viewer") -> Path:
    """Write the viewer for a cloud ``(N, 3)`` metres (``rgb`` optional), a GT layout and a prediction.

    Any of them may be None, but not all. Points beyond ``max_points`` are subsampled (fixed seed).
    The file is written atomically; returns its path.

    >>> import tempfile
    >>> from spacelm.scene import Box
    >>> bed = Layout(boxes=[Box("bed", 1, 1, 0.3, 0, 2, 1, 0.6)])
    >>> "bed" in write_html(Path(tempfile.mkdtemp()) / "v.html", layout=bed).read_text()
    True
    """
    if points is None and layout is None and pred is None:
        raise ValueError("nothing to show: give points, a layout or a prediction")
    xyz, colors = subsample_points(points, rgb, max_points)
    parts = [layout_segments(lay, predicted) for lay, predicted in ((layout, False), (pred, True))
             if lay is not None]
    segments = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 2, 3), np.float32)
    segment_rgb = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 3), np.uint8)
    everything = np.concatenate([xyz, segments.reshape(-1, 3)])
    lo, hi = (everything.min(axis=0), everything.max(axis=0)) if len(everything) else (np.zeros(3),) * 2
    data = {
        "points": _part(xyz, colors),
        "lines": _part(segments.reshape(-1, 3), np.repeat(segment_rgb, 2, axis=0)),
        "labels": [label for p in parts for label in p[2]],
        "legend": _legend(len(xyz), layout, pred),
        "center": ((lo + hi) / 2).tolist(),
        "radius": max(float(np.linalg.norm(hi - lo)) / 2, 0.5),
    }
    # One pass, so that a title or label containing a placeholder's name is never substituted;
    # "<" is escaped in the JSON so that no label can close the <script> block.
    values = {"TITLE": html.escape(title), "DATA": json.dumps(data).replace("<", "\\u003c")}
    atomic_write_text(path, re.sub(r"__(TITLE|DATA)__", lambda m: values[m.group(1)], _PAGE))
    return Path(path)


def _part(xyz: np.ndarray, rgb: np.ndarray) -> dict:
    """Vertices for the page: count, float32 positions and uint8 colours, base64 (little-endian)."""
    return {"count": len(xyz),
            "xyz": base64.b64encode(np.ascontiguousarray(xyz, "<f4").tobytes()).decode("ascii"),
            "rgb": base64.b64encode(np.ascontiguousarray(rgb, np.uint8).tobytes()).decode("ascii")}


def css_color(rgb) -> str:
    """``(r, g, b)`` 0-255 -> ``"#rrggbb"``."""
    r, g, b = rgb
    return f"#{r:02x}{g:02x}{b:02x}"


def _legend(num_points: int, layout: Layout | None, pred: Layout | None) -> list[dict]:
    entries = [{"text": f"{num_points:,} points", "color": "#dddddd"}] if num_points else []
    if layout is not None:
        entries.append({"text": f"ground truth ({len(layout.boxes)} boxes)", "color": css_color(GT_BOX)})
    if pred is not None:
        entries.append({"text": f"prediction ({len(pred.boxes)} boxes)", "color": css_color(PRED)})
    return entries


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
html, body { margin: 0; height: 100%; overflow: hidden; background: #202329; color: #ddd;
             font: 13px sans-serif; }
canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
#info { position: absolute; left: 10px; top: 8px; pointer-events: none; line-height: 1.5; }
</style></head>
<body>
<canvas id="gl"></canvas><canvas id="text"></canvas>
<div id="info"><b>__TITLE__</b></div>
<script type="application/json" id="scene">__DATA__</script>
<script>
"use strict";
const scene = JSON.parse(document.getElementById("scene").textContent);
const glCanvas = document.getElementById("gl"), textCanvas = document.getElementById("text");
const gl = glCanvas.getContext("webgl"), ctx = textCanvas.getContext("2d");
const info = document.getElementById("info");
for (const entry of scene.legend.concat([{text: "drag: orbit, shift/right-drag: pan, wheel: zoom",
                                          color: "#888"}])) {
  const line = document.createElement("div");
  line.textContent = entry.text;
  line.style.color = entry.color;
  info.appendChild(line);
}

// Small vector and column-major 4x4 matrix helpers (the layout WebGL expects).
const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const normalize = (a) => { const n = Math.hypot(...a); return [a[0] / n, a[1] / n, a[2] / n]; };
function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2), d = near - far;
  return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) / d, -1, 0, 0, 2 * far * near / d, 0];
}
function lookAt(eye, target, up) {
  const z = normalize(sub(eye, target)), x = normalize(cross(up, z)), y = cross(z, x);
  return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0,
          -dot(x, eye), -dot(y, eye), -dot(z, eye), 1];
}
function multiply(a, b) {
  const out = new Array(16).fill(0);
  for (let c = 0; c < 4; c++)
    for (let r = 0; r < 4; r++)
      for (let k = 0; k < 4; k++) out[c * 4 + r] += a[k * 4 + r] * b[c * 4 + k];
  return out;
}

// Orbit camera about scene.center, z up; starts from the +x, -y side like spacelm's "corner" render.
const view = {yaw: -Math.PI / 4, pitch: 0.6, distance: 2.6 * scene.radius, target: scene.center.slice()};
function eye() {
  const c = Math.cos(view.pitch);
  return [view.target[0] + view.distance * c * Math.cos(view.yaw),
          view.target[1] + view.distance * c * Math.sin(view.yaw),
          view.target[2] + view.distance * Math.sin(view.pitch)];
}

function shader(type, source) {
  const s = gl.createShader(type);
  gl.shaderSource(s, source);
  gl.compileShader(s);
  return s;
}
function upload(part) {
  const buffer = (base64, Type) => {
    const bytes = Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));
    const b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, new Type(bytes.buffer), gl.STATIC_DRAW);
    return b;
  };
  return {count: part.count, xyz: buffer(part.xyz, Float32Array), rgb: buffer(part.rgb, Uint8Array)};
}

let program, points, lines;
if (gl) {
  program = gl.createProgram();
  gl.attachShader(program, shader(gl.VERTEX_SHADER, `
    attribute vec3 position; attribute vec3 color; uniform mat4 mvp; uniform float pointSize;
    varying vec3 vColor;
    void main() { gl_Position = mvp * vec4(position, 1.0); gl_PointSize = pointSize; vColor = color; }`));
  gl.attachShader(program, shader(gl.FRAGMENT_SHADER, `
    precision mediump float; varying vec3 vColor;
    void main() { gl_FragColor = vec4(vColor, 1.0); }`));
  gl.linkProgram(program);
  gl.useProgram(program);
  points = upload(scene.points);
  lines = upload(scene.lines);
} else {
  info.appendChild(document.createTextNode("WebGL is not available in this browser."));
}

function drawPart(part, mode) {
  if (!part.count) return;
  const position = gl.getAttribLocation(program, "position"), color = gl.getAttribLocation(program, "color");
  gl.bindBuffer(gl.ARRAY_BUFFER, part.xyz);
  gl.enableVertexAttribArray(position);
  gl.vertexAttribPointer(position, 3, gl.FLOAT, false, 0, 0);
  gl.bindBuffer(gl.ARRAY_BUFFER, part.rgb);
  gl.enableVertexAttribArray(color);
  gl.vertexAttribPointer(color, 3, gl.UNSIGNED_BYTE, true, 0, 0);
  gl.drawArrays(mode, 0, part.count);
}

function drawLabels(mvp, width, height, ratio) {
  ctx.clearRect(0, 0, width, height);
  ctx.font = `${12 * ratio}px sans-serif`;
  ctx.textAlign = "center";
  for (const label of scene.labels) {
    const [x, y, z] = label.at;
    const w = mvp[3] * x + mvp[7] * y + mvp[11] * z + mvp[15];
    if (w <= 0) continue;  // behind the camera
    const u = (mvp[0] * x + mvp[4] * y + mvp[8] * z + mvp[12]) / w;
    const v = (mvp[1] * x + mvp[5] * y + mvp[9] * z + mvp[13]) / w;
    ctx.fillStyle = label.color;
    ctx.fillText(label.text, (u + 1) / 2 * width, (1 - v) / 2 * height - 4 * ratio);
  }
}

function draw() {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(glCanvas.clientWidth * ratio), height = Math.round(glCanvas.clientHeight * ratio);
  for (const c of [glCanvas, textCanvas]) { c.width = width; c.height = height; }
  if (!gl) return;
  const mvp = multiply(perspective(0.8, width / height, view.distance / 100, view.distance * 10),
                       lookAt(eye(), view.target, [0, 0, 1]));
  gl.viewport(0, 0, width, height);
  gl.clearColor(0.125, 0.137, 0.161, 1);
  gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
  gl.enable(gl.DEPTH_TEST);
  gl.uniformMatrix4fv(gl.getUniformLocation(program, "mvp"), false, mvp);
  gl.uniform1f(gl.getUniformLocation(program, "pointSize"), 2 * ratio);
  drawPart(points, gl.POINTS);
  drawPart(lines, gl.LINES);
  drawLabels(mvp, width, height, ratio);
}

let pending = false;
function redraw() {
  if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); }
}
let drag = null;
textCanvas.addEventListener("contextmenu", (e) => e.preventDefault());
textCanvas.addEventListener("mousedown", (e) => {
  drag = {x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey};
});
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", (e) => {
  if (!drag) return;
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  drag.x = e.clientX;
  drag.y = e.clientY;
  if (drag.pan) {  // move the target in the screen plane, by the distance the cursor covers
    const forward = normalize(sub(view.target, eye())), right = normalize(cross(forward, [0, 0, 1]));
    const up = cross(right, forward), scale = view.distance * 0.0015;
    for (let i = 0; i < 3; i++) view.target[i] += (-dx * right[i] + dy * up[i]) * scale;
  } else {
    view.yaw -= dx * 0.005;
    view.pitch = Math.max(-1.5, Math.min(1.5, view.pitch + dy * 0.005));
  }
  redraw();
});
textCanvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  view.distance *= Math.exp(e.deltaY * 0.001);
  redraw();
}, {passive: false});
window.addEventListener("resize", redraw);
draw();
</script>
</body></html>
"""
