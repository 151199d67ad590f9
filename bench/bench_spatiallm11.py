"""A SpatialLM1.1-Qwen-0.5B-sized model on CPU: load an upstream-layout folder, predict one real room.

The folder is built once from ../shared/fixtures/spatiallm11_tiny/keys_full_size.txt: upstream's config
and key layout at full size (Qwen2.5-0.5B + Sonata at its defaults, mlp projector, ~604 M parameters) with
random bfloat16 weights, plus the fixture's tokenizer. It then loads through ``load_spatiallm_checkpoint``
(float32) and predicts ScanNet scene0000_00 (../shared/realdata/scannet_spacelm_vla3d_scene0000_00), greedy,
exactly ``--new-tokens`` tokens. Prints, per thread count: build/load seconds, voxels and point tokens,
encoder seconds, time to first token (encoder + prefill), decode tokens/s and the process's peak RSS,
with the process CPU time next to the wall times (the steadier figure on a shared machine).
Random weights make the text meaningless; the timings are those of the real shapes.

    python bench/bench_spatiallm11.py --threads 1 2                    # about 1-2 minutes per thread count
    python bench/bench_spatiallm11.py --threads 1 2 --dtype bfloat16   # the LM in bf16
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers.generation.streamers import BaseStreamer

from spacelm.model.spatiallm_checkpoint import load_spatiallm_checkpoint
from spacelm.points import read_points
from spacelm.predict import clean_cloud

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
FIXTURE = SHARED / "fixtures" / "spatiallm11_tiny"
ROOM = SHARED / "realdata" / "scannet_spacelm_vla3d_scene0000_00" / "scene0000_00_pc_result.ply"
SECTION = "SpatialLM1.1-Qwen-0.5B"


def full_size_listing() -> tuple[dict, dict, dict[str, list[int]]]:
    """(text config, point config, {key: shape}) of the SpatialLM 1.1 section of keys_full_size.txt."""
    text = point = None
    keys, inside = {}, False
    for line in (FIXTURE / "keys_full_size.txt").read_text().splitlines():
        if line.startswith("## SpatialLM") or line.startswith("## same model"):
            inside = line.startswith("## " + SECTION)
        elif inside and (m := re.match(r"## (point_config|Qwen2 text config) (\{.*\})$", line)):
            text, point = (json.loads(m[2]), point) if m[1] != "point_config" else (text, json.loads(m[2]))
        elif inside and line and not line.startswith("#"):
            key, shape, _ = line.split(" ")
            keys[key] = [int(v) for v in shape.strip("[]").split(",")]
    return text, point, keys


def build_folder(folder: Path) -> None:
    """Upstream-layout config.json + random bf16 model.safetensors + the fixture's tokenizer."""
    text, point, keys = full_size_listing()
    tiny = json.loads((FIXTURE / "checkpoint" / "config.json").read_text())
    config = {**text, "architectures": ["SpatialLMQwenForCausalLM"], "model_type": "spatiallm_qwen",
              "point_backbone": "sonata", "point_config": point, "projector": "mlp", "torch_dtype": "bfloat16",
              **{k: tiny[k] for k in ("point_start_token_id", "point_end_token_id", "point_token_id")}}
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for key, shape in keys.items():
        if key == "lm_head.weight":  # tied to the embedding: upstream does not store it
            continue
        if re.search(r"norm[^.]*(\.0)?\.weight$", key):
            tensors[key] = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensors[key] = (0.02 * torch.randn(shape, generator=gen)).to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for tokenizer_file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "added_tokens.json", "vocab.json", "merges.txt"):
        shutil.copy(FIXTURE / "checkpoint" / tokenizer_file, folder / tokenizer_file)


class TokenClock(BaseStreamer):
    """Times ``generate``'s calls: the first hands over the prompt, each later one a new token."""

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def put(self, value) -> None:
        self.times.append(clocks())

    def end(self) -> None:
        pass


def clocks() -> tuple[float, float]:
    """Wall and process CPU seconds: on a shared machine the CPU time is the steadier figure."""
    return time.perf_counter(), time.process_time()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="the LM's dtype (the Sonata encoder stays float32); bfloat16 pays off on CPUs with "
                             "AVX512-BF16 or AMX")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "spacelm_bench_spatiallm11",
                        help="where the random upstream-layout checkpoint is (built if absent)")
    args = parser.parse_args()

    start = time.perf_counter()
    if not (args.folder / "model.safetensors").is_file():
        build_folder(args.folder)
        print(f"built {args.folder} in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    model, processor = load_spatiallm_checkpoint(args.folder, dtype=getattr(torch, args.dtype))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {n_params / 1e6:.0f} M parameters ({args.dtype} LM) in {time.perf_counter() - start:.1f} s, "
          f"peak RSS {peak_rss_gib():.2f} GiB")

    cloud = clean_cloud(read_points(ROOM), processor.num_bins)
    batch = processor([cloud])
    inputs = batch.inputs
    n_voxels, n_tokens = len(inputs["point_coords"]), int((inputs["input_ids"] == model.config.point_token_id).sum())
    print(f"{ROOM.name}: {len(cloud.xyz)} points after clean-up, {n_voxels} voxels, {n_tokens} point tokens, "
          f"{inputs['input_ids'].shape[1]} prompt tokens")
    encoder_clock = []  # (wall, cpu) at the encoder's start and end, inside generate's prefill
    model.point_encoder.register_forward_pre_hook(lambda *_: encoder_clock.append(clocks()))
    model.point_encoder.register_forward_hook(lambda *_: encoder_clock.append(clocks()))
    for threads in args.threads:
        torch.set_num_threads(threads)
        encoder_clock.clear()
        clock = TokenClock()
        start = clocks()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                 do_sample=False, use_cache=True, streamer=clock)
        end = clocks()
        new = out.shape[1] - inputs["input_ids"].shape[1]
        (first, first_cpu), (last, last_cpu) = clock.times[1], clock.times[-1]
        (enc_start, enc_start_cpu), (enc_end, enc_end_cpu) = encoder_clock
        print(f"threads {threads}: encoder {enc_end - enc_start:.1f} s (cpu {enc_end_cpu - enc_start_cpu:.1f} s), "
              f"time to first token {first - start[0]:.1f} s (cpu {first_cpu - start[1]:.1f} s), "
              f"decode {(new - 1) / (last - first):.2f} tokens/s (cpu {(last_cpu - first_cpu) / (new - 1):.3f} "
              f"s/token), {new} new tokens, total {end[0] - start[0]:.1f} s, peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
