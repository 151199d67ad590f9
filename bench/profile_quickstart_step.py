"""Where a quickstart training step goes: data, sparse encoder, language model, optimiser.

Builds the quickstart's model (``spacelm.quickstart.quickstart_config``: tiny random LM, cheap sparse
encoder at 10 cm) on freshly synthesised rooms of the quickstart (``spacelm.quickstart.ROOMS``), and
prints the median milliseconds per batch of ``--batch`` rooms (each part timed on every batch, after
a warm-up run on that batch):

- data: ``LayoutDataset`` items with the quickstart's augmentation (grid sampling, tokenising), run in
  the DataLoader worker during training, so it competes for the same cores;
- encoder fwd+bwd: the point encoder alone on the batch's voxels (kernel maps included);
- model fwd+bwd: the whole model (encoder, projector, LM, loss; the token head and its branch where the
  variant has them), as in a training step;
- optimiser: AdamW step over every parameter (stage 2).

    python bench/profile_quickstart_step.py               # the quickstart (task all, batch 4)
    python bench/profile_quickstart_step.py --task arch   # walls, doors, windows only
    python bench/profile_quickstart_step.py --variants short bins stem3   # ablation variants side by side

Run on an idle machine; the quickstart's measured s/step also holds the Trainer's own overhead.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablate_quickstart import VARIANT_ROOMS, VARIANTS, merged  # noqa: E402  (a sibling script)


def median_ms(step, batches) -> float:
    step(batches[0])  # warm-up
    times = []
    for batch in batches[1:]:
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="all", choices=["all", "arch", "object"])
    parser.add_argument("--batch", type=int, default=4, help="rooms per step (the quickstart's is 4)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["short"], choices=list(VARIANTS),
                        help="bench/ablate_quickstart.py variants to time side by side (short: the quickstart)")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    setups = {name: build(name, args) for name in args.variants}

    # Interleaved batch by batch over the parts and the variants, so a slow spell of the machine hits all alike.
    times = {name: {"encoder": [], "model": [], "optimiser": []} for name in setups}
    for i in range(args.batches + 1):
        for name, (model, optimizer, batches, _) in setups.items():
            batch = batches[i]
            for part, step in (("encoder", encoder_step), ("model", model_step), ("optimiser", optimiser_step)):
                ms = median_ms(lambda b: step(model, optimizer, b), [batch, batch])
                if i:  # the first batch warms up
                    times[name][part].append(ms)

    for name, (model, _, batches, data_ms) in setups.items():
        t = times[name]
        lm_ms = statistics.median(m - e for m, e in zip(t["model"], t["encoder"]))
        encoder_ms, optimiser_ms = statistics.median(t["encoder"]), statistics.median(t["optimiser"])
        tokens = [int(b["attention_mask"].sum()) / args.batch for b in batches]
        points = [int((b["input_ids"] == model.config.point_token_id).sum()) / args.batch for b in batches]
        answer = [int((b["labels"] != -100).sum()) / args.batch for b in batches]
        voxels = [len(b["point_coords"]) / args.batch for b in batches]
        print(f"\n{name}: task {args.task}, {args.batch} rooms per batch, {args.threads} threads; per room: "
              f"{statistics.mean(voxels):.0f} voxels, {statistics.mean(tokens):.0f} tokens "
              f"({statistics.mean(points):.0f} point, {statistics.mean(answer):.0f} answer)")
        print(f"{'part':<28} {'ms/batch':>9} {'share':>6}")
        step_ms = encoder_ms + lm_ms + optimiser_ms
        for part, ms in (("data (DataLoader worker)", data_ms), ("encoder fwd+bwd", encoder_ms),
                         ("LM + rest fwd+bwd", lm_ms), ("optimiser", optimiser_ms)):
            share = f"{ms / step_ms:>6.0%}" if part != "data (DataLoader worker)" else ""
            print(f"{part:<28} {ms:>9.0f} {share:>6}")
        print(f"{'step (sum of the three)':<28} {step_ms:>9.0f}")


def build(name: str, args):
    """``(model, optimiser, collated batches, data ms per batch)`` of one variant on its own rooms."""
    import dataclasses

    import torch

    from spacelm.datasets.convert import synthesize_dataset
    from spacelm.quickstart import ROOMS, quickstart_config
    from spacelm.train.args import config_from_dict
    from spacelm.train.data import LayoutDataset
    from spacelm.train.sft import initial_model

    n_rooms = args.batch * (args.batches + 1)
    tmp = Path(tempfile.mkdtemp(prefix="profile_quickstart_"))
    try:
        data = tmp / "rooms"
        synthesize_dataset(data, n_rooms, seed=0, val_fraction=0.0, workers=2, show_progress=False,
                           synth=dataclasses.replace(ROOMS, **VARIANT_ROOMS.get(name, {})))
        base = quickstart_config(tmp / "run", train_dir=data, val_dir=data, stage1_minutes=1, stage2_minutes=1)
        config = config_from_dict(merged(dataclasses.asdict(base), VARIANTS[name]))
        config.data.task = args.task if name not in ("arch", "zero_resnet", "probe_task") else "arch"
        model, processor = initial_model(config, "1")
        dataset = LayoutDataset([data], processor, split="train", task=config.data.task, augment=config.data.augment,
                                task_mix=config.data.task_mix, token_labels=config.model.token_labels)
        groups = [range(b * args.batch, (b + 1) * args.batch) for b in range(args.batches + 1)]
        batches = [processor.collate([dataset[i] for i in rooms]) for rooms in groups]
        data_ms = median_ms(lambda rooms: processor.collate([dataset[i] for i in rooms]), groups)
    finally:
        shutil.rmtree(tmp)
    model.train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4), batches, data_ms


def encoder_step(model, optimizer, batch):
    import torch

    coords = torch.cat([batch["point_batch"].long()[:, None], batch["point_coords"].long()], dim=1)
    model.point_encoder(coords, batch["point_features"]).features.square().mean().backward()


def model_step(model, optimizer, batch):
    model(**batch).loss.backward()


def optimiser_step(model, optimizer, batch):
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)


if __name__ == "__main__":
    main()
