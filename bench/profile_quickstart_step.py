"""Where a quickstart training step goes: data, sparse encoder, language model, optimiser.

Builds the quickstart's model (``spacelm.quickstart.quickstart_config``: tiny random LM, cheap sparse
encoder at 5 cm) on freshly synthesised rooms of the full generator at the quickstart's density, and
prints the median milliseconds per batch of ``--batch`` rooms (each part timed on every batch, after
a warm-up run on that batch):

- data: ``LayoutDataset`` items with the quickstart's augmentation (grid sampling, tokenising), run in
  the DataLoader worker during training, so it competes for the same cores;
- encoder fwd+bwd: the point encoder alone on the batch's voxels (kernel maps included);
- model fwd+bwd: the whole model (encoder, projector, LM, loss), as in a training step;
- optimiser: AdamW step over every parameter (stage 2).

    python bench/profile_quickstart_step.py               # the quickstart (task all, batch 4)
    python bench/profile_quickstart_step.py --task arch   # walls, doors, windows only

Run on an idle machine; the quickstart's measured s/step also holds the Trainer's own overhead.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


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
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from spacelm.datasets.convert import synthesize_dataset
    from spacelm.quickstart import DENSITY, quickstart_config
    from spacelm.train.data import LayoutDataset
    from spacelm.train.sft import initial_model

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    n_rooms = args.batch * (args.batches + 1)
    tmp = Path(tempfile.mkdtemp(prefix="profile_quickstart_"))
    try:
        data = tmp / "rooms"
        synthesize_dataset(data, n_rooms, seed=0, val_fraction=0.0, density=DENSITY, workers=2, show_progress=False)
        config = quickstart_config(tmp / "run", train_dir=data, val_dir=data, stage1_minutes=1, stage2_minutes=1)
        config.data.task = args.task
        model, processor = initial_model(config, "1")
        dataset = LayoutDataset([data], processor, split="train", task=args.task, augment=config.data.augment)
        groups = [range(b * args.batch, (b + 1) * args.batch) for b in range(args.batches + 1)]
        batches = [processor.collate([dataset[i] for i in rooms]) for rooms in groups]
        data_ms = median_ms(lambda rooms: processor.collate([dataset[i] for i in rooms]), groups)
    finally:
        shutil.rmtree(tmp)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def encoder_step(batch):
        coords = torch.cat([batch["point_batch"].long()[:, None], batch["point_coords"].long()], dim=1)
        model.point_encoder(coords, batch["point_features"]).features.square().mean().backward()

    def model_step(batch):
        model(**batch).loss.backward()

    def optimiser_step(_):
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    # Interleaved on each batch, so a slow spell of the machine hits both parts alike.
    encoder_ms, model_ms, optimiser_ms = [], [], []
    for i, batch in enumerate(batches):
        times = [median_ms(step, [batch, batch]) for step in (encoder_step, model_step, optimiser_step)]
        if i:  # the first batch warms up
            for kept, ms in zip((encoder_ms, model_ms, optimiser_ms), times):
                kept.append(ms)
    lm_ms = statistics.median(m - e for m, e in zip(model_ms, encoder_ms))
    encoder_ms, optimiser_ms = statistics.median(encoder_ms), statistics.median(optimiser_ms)
    model.zero_grad()

    tokens = [int(b["attention_mask"].sum()) / args.batch for b in batches]
    points = [int((b["input_ids"] == model.config.point_token_id).sum()) / args.batch for b in batches]
    answer = [int((b["labels"] != -100).sum()) / args.batch for b in batches]
    voxels = [len(b["point_coords"]) / args.batch for b in batches]
    print(f"task {args.task}, {args.batch} rooms per batch, {args.threads} threads; per room: "
          f"{statistics.mean(voxels):.0f} voxels, {statistics.mean(tokens):.0f} tokens "
          f"({statistics.mean(points):.0f} point, {statistics.mean(answer):.0f} answer)")
    print(f"{'part':<28} {'ms/batch':>9} {'share':>6}")
    step_ms = encoder_ms + lm_ms + optimiser_ms
    for name, ms in (("data (DataLoader worker)", data_ms), ("encoder fwd+bwd", encoder_ms),
                     ("LM + rest fwd+bwd", lm_ms), ("optimiser", optimiser_ms)):
        share = f"{ms / step_ms:>6.0%}" if name != "data (DataLoader worker)" else ""
        print(f"{name:<28} {ms:>9.0f} {share:>6}")
    print(f"{'step (sum of the three)':<28} {step_ms:>9.0f}")


if __name__ == "__main__":
    main()
