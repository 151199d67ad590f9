"""A vision-language policy (a tiny random Qwen2.5-VL built offline) trains with GRPO on CPU,
with the empty-room render in the dataset: its vision tower's weights change."""

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from spacelm.arrange.answer import completion_text  # noqa: E402
from spacelm.arrange.config import ArrangeArgs, trl_config  # noqa: E402
from spacelm.arrange.generate import generate_tasks  # noqa: E402
from spacelm.arrange.prompts import compact_answer, compact_prompt  # noqa: E402


def length_judge(prompts, completions, completion_ids=None, **columns):
    """A stand-in judge giving the random policy's completions different rewards (see test_grpo)."""
    return [float(len(completion_text(c)) % 50) for c in completions]


def test_tiny_qwen2_5_vl_trains_its_vision_tower_on_room_images(tmp_path):
    from trl import GRPOConfig

    from spacelm.arrange.grpo import build_trainer, task_rows
    from spacelm.arrange.vl_processor import (
        ImageOnlyQwen2_5_VLProcessor,
        save_tiny_vl_policy,
    )
    from spacelm.model.tiny import tiny_tokenizer

    generated = generate_tasks(8, seed=1, max_objects=2)
    corpus = [compact_prompt(g.task) for g in generated] + [compact_answer(g.reference) for g in generated]
    policy = save_tiny_vl_policy(tmp_path / "vl", tiny_tokenizer(400, corpus=corpus))
    args = ArrangeArgs(model=str(policy), prompt_style="compact", image=True, image_size=96)
    row = task_rows([generated[0].task], args)[0]
    assert row["image"].size == (96, 96) and row["prompt"][0]["content"][0] == {"type": "image"}
    config = trl_config(GRPOConfig, {}, "", "grpo", output_dir=str(tmp_path / "grpo"), max_steps=2,
                        per_device_train_batch_size=4, num_generations=4, max_completion_length=16,
                        learning_rate=1e-2, use_cpu=True, report_to=[], logging_steps=1,
                        save_strategy="no", bf16=False, beta=0.0, disable_tqdm=True)
    trainer = build_trainer(args, config, [g.task for g in generated], judge=length_judge)
    assert isinstance(trainer.processing_class, ImageOnlyQwen2_5_VLProcessor)  # CPU torch: no torchvision
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if "visual" in k}
    trainer.train()
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(before) >= 20 and len(changed) == len(before)
    trainer.save_model(tmp_path / "saved")
    trainer.processing_class.save_pretrained(tmp_path / "saved")
    again = ImageOnlyQwen2_5_VLProcessor.from_pretrained(tmp_path / "saved")
    assert again.tokenizer.convert_tokens_to_ids("<|image_pad|>") == \
        trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert again.chat_template == trainer.processing_class.chat_template


def test_tiny_qwen2_5_vl_trains_with_two_turn_refinement(tmp_path):
    from trl import GRPOConfig

    from spacelm.arrange.grpo import build_trainer
    from spacelm.arrange.multiturn import ArrangeRollout
    from spacelm.arrange.vl_processor import save_tiny_vl_policy
    from spacelm.model.tiny import tiny_tokenizer

    generated = generate_tasks(8, seed=1, max_objects=2)
    corpus = [compact_prompt(g.task) for g in generated] + [compact_answer(g.reference) for g in generated]
    policy = save_tiny_vl_policy(tmp_path / "vl", tiny_tokenizer(400, corpus=corpus))
    args = ArrangeArgs(model=str(policy), prompt_style="compact", feedback_style="compact", image=True,
                       image_size=96, turns=2)
    config = trl_config(GRPOConfig, {}, "", "grpo", output_dir=str(tmp_path / "grpo"), max_steps=2,
                        per_device_train_batch_size=4, num_generations=4, max_completion_length=12,
                        learning_rate=1e-2, use_cpu=True, report_to=[], logging_steps=1,
                        save_strategy="no", bf16=False, beta=0.0, disable_tqdm=True)
    trainer = build_trainer(args, config, [g.task for g in generated], judge=length_judge)
    assert isinstance(trainer.rollout_func, ArrangeRollout)
    image_pad = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    row = dict(trainer.train_dataset[0])
    trainer.current_rows = [row]
    from trl.data_utils import prepare_multimodal_messages

    out = trainer.rollout_func([prepare_multimodal_messages(row["prompt"], images=[row["image"]])], trainer)
    # a 96 px image is 6 x 6 patches of 14 px (resized to 84), merged 2 x 2: 9 image tokens, once
    assert out["prompt_ids"][0].count(image_pad) == 9 and image_pad not in out["completion_ids"][0]
    assert [m for j, m in enumerate(out["env_mask"][0]) if j == 0 or m != out["env_mask"][0][j - 1]] == [1, 0, 1]
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if "visual" in k}
    trainer.train()  # TRL's forward pass sees the same image tokens with the dataset image
    after = trainer.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
