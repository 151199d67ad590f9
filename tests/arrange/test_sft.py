"""The SFT baseline: jittered references, prompt-completion rows, a saved policy that loads."""

import json

import numpy as np
import pytest

from spacelm.arrange.answer import parse_answer
from spacelm.arrange.config import ArrangeArgs, ArrangeConfigError, training_tasks
from spacelm.arrange.generate import generate_tasks, save_generated
from spacelm.arrange.prompts import compact_answer, compact_prompt
from spacelm.arrange.sft import jittered, reference_text, sft_rows


@pytest.fixture(scope="module")
def generated():
    return generate_tasks(10, seed=2, max_objects=3)


def test_jitter_moves_x_and_y_by_the_asked_spread_and_nothing_else(generated):
    moved = [p for g in generated for p in jittered(g.reference, 0.25, 7, g.task.id)]
    original = [p for g in generated for p in g.reference]
    dx = np.array([m.x - o.x for m, o in zip(moved, original)])
    dy = np.array([m.y - o.y for m, o in zip(moved, original)])
    assert 0.15 < np.std(np.concatenate([dx, dy])) < 0.35 and len(dx) >= 25
    assert all(m.z == o.z and m.rotation == o.rotation and m.id == o.id for m, o in zip(moved, original))
    again = [p for g in generated for p in jittered(g.reference, 0.25, 7, g.task.id)]
    assert again == moved  # a function of (seed, task), so a resumed run sees the same targets
    assert jittered(generated[0].reference, 0.25, 8, generated[0].task.id) != \
        jittered(generated[0].reference, 0.25, 7, generated[0].task.id)
    assert jittered(generated[0].reference, 0.0, 7, generated[0].task.id) == list(generated[0].reference)


@pytest.mark.parametrize("style", ["compact", "metaspatial"])
def test_rows_pair_the_prompt_with_a_parseable_reference(generated, style):
    args = ArrangeArgs(prompt_style=style)
    rows = sft_rows([g.task for g in generated], [g.reference for g in generated], args)
    for g, row in zip(generated, rows):
        target = row["completion"][0]["content"]
        answer = parse_answer(target, g.task)
        assert answer.complete and answer.structure_ok and answer.strict_json
        np.testing.assert_allclose([p.x for p in answer.placements], [p.x for p in g.reference],
                                   atol=5e-3 if style == "compact" else 5e-4)  # 2 or 3 decimals
        assert row["prompt"][-1]["role"] == "user"
    assert reference_text(generated[0].reference, args).startswith("<think>")


def test_training_tasks_read_from_files_need_their_references(tmp_path, generated):
    tasks_path, refs_path = tmp_path / "tasks.jsonl", tmp_path / "tasks.reference.jsonl"
    save_generated(generated, tasks_path, refs_path)
    tasks, refs = training_tasks(ArrangeArgs(tasks=str(tasks_path), references=str(refs_path)),
                                 need_references=True)
    assert [t.id for t in tasks] == [g.task.id for g in generated]
    assert [tuple(r) for r in refs] == [tuple(g.reference) for g in generated]
    with pytest.raises(ArrangeConfigError, match="arrange.references"):
        training_tasks(ArrangeArgs(tasks=str(tasks_path)), need_references=True)
    lines = refs_path.read_text().splitlines()
    refs_path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ArrangeConfigError, match=f"no reference completion for task '{generated[0].task.id}'"):
        training_tasks(ArrangeArgs(tasks=str(tasks_path), references=str(refs_path)), need_references=True)


def test_sft_lowers_the_loss_and_saves_a_policy_that_eval_loads(tmp_path, generated):
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig

    from spacelm.arrange.config import trl_config
    from spacelm.arrange.sampling import generate_completions
    from spacelm.arrange.sft import train_sft
    from spacelm.model.tiny import save_tiny_base_lm

    corpus = [compact_prompt(g.task) for g in generated] + [compact_answer(g.reference) for g in generated]
    base = save_tiny_base_lm(tmp_path / "base", hidden_size=32, num_layers=1, num_heads=2, corpus=corpus,
                             vocab_size=400)

    class Losses(TrainerCallback):
        values = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.values.append(float(logs["loss"]))

    config = trl_config(SFTConfig, {}, "", "sft", output_dir=str(tmp_path / "sft"), max_steps=30,
                        per_device_train_batch_size=4, learning_rate=1e-2, use_cpu=True, report_to=[],
                        logging_steps=5, save_strategy="no", bf16=False, disable_tqdm=True)
    args = ArrangeArgs(model=str(base), prompt_style="compact", jitter=0.2)
    folder = train_sft(args, config, [g.task for g in generated], [g.reference for g in generated],
                       callbacks=[Losses()])
    assert Losses.values[-1] < 0.6 * Losses.values[0]
    assert json.loads((folder / "spacelm_arrange.json").read_text())["prompt_style"] == "compact"
    assert AutoModelForCausalLM.from_pretrained(folder).config.hidden_size == 32
    records = generate_completions(folder, [generated[0].task], max_new_tokens=8, temperature=0)
    assert len(records) == 1 and records[0].task_id == generated[0].task.id
