import subprocess
import sys


def test_scene_core_and_package_import_without_torch_or_transformers():
    # A fresh interpreter: the test session itself has torch loaded already.
    code = ("import sys, spacelm, spacelm.scene, spacelm.scene.metrics, spacelm.points, spacelm.datasets.rooms; "
            "print(sorted(m for m in ('torch', 'transformers', 'scipy.optimize') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
