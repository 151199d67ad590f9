"""GRPO on TRL with a tiny offline policy: single-turn, multi-turn rollout, per-object credit,
resume, config errors, and two CPU processes ending with identical weights."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from transformers import TrainerCallback  # noqa: E402

from spacelm.arrange.config import (  # noqa: E402
    ArrangeArgs,
    ArrangeConfigError,
    arrange_args,
    trl_config,
)
from spacelm.arrange.generate import generate_tasks  # noqa: E402
from spacelm.arrange.multiturn import ArrangeRollout, DiscountedReturn, feedback_suffix  # noqa: E402
from spacelm.arrange.prompts import compact_answer, compact_prompt, feedback_message  # noqa: E402
from spacelm.arrange.rewards import ArrangeReward  # noqa: E402


@pytest.fixture(scope="module")
def generated():
    return generate_tasks(12, seed=1, max_objects=2)


@pytest.fixture(scope="module")
def policy(tmp_path_factory, generated):
    from spacelm.model.tiny import save_tiny_base_lm

    corpus = [compact_prompt(g.task) for g in generated] + [compact_answer(g.reference) for g in generated]
    return save_tiny_base_lm(tmp_path_factory.mktemp("policy") / "base", hidden_size=32, num_layers=1,
                             num_heads=2, corpus=corpus, vocab_size=400)


def _args(policy, **kw):
    return ArrangeArgs(model=str(policy), prompt_style="compact", feedback_style="compact", **kw)


def _config(tmp_path, **kw):
    from trl import GRPOConfig

    values = dict(output_dir=str(tmp_path / "grpo"), max_steps=2, per_device_train_batch_size=4,
                  num_generations=4, max_completion_length=24, learning_rate=1e-2, use_cpu=True,
                  report_to=[], logging_steps=1, save_strategy="no", bf16=False, beta=0.0,
                  loss_type="dapo", seed=0, disable_tqdm=True)
    return trl_config(GRPOConfig, {}, "", "grpo", **{**values, **kw})


class Logs(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def length_judge(prompts, completions, completion_ids=None, **columns):
    """A stand-in judge: a score from the text length, and an outage (None) for every fourth.

    A random policy never writes a readable layout, so format and physics give every completion
    the same reward and GRPO has nothing to learn from; the judge term brings the variance."""
    from spacelm.arrange.answer import completion_text

    return [None if i % 4 == 0 else float(len(completion_text(c)) % 50)
            for i, c in enumerate(completions)]


def test_single_turn_grpo_trains_and_logs_each_reward_term(tmp_path, policy, generated):
    from spacelm.arrange.grpo import build_trainer

    logs = Logs()
    trainer = build_trainer(_args(policy), _config(tmp_path), [g.task for g in generated],
                            callbacks=[logs], judge=length_judge)
    before = _weights(trainer.model)
    trainer.train()
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    logged = {k for entry in logs.logs for k in entry}
    assert {"arrange/valid", "arrange/format", "arrange/judge", "rewards/arrange_reward/mean"} <= logged
    missing = [entry["arrange/judge_missing"] for entry in logs.logs if "arrange/judge_missing" in entry]
    assert missing and min(missing) >= 1  # outages are counted, and left out of the reward


def test_two_turn_rollout_masks_feedback_and_scores_every_turn(tmp_path, policy, generated):
    from spacelm.arrange.grpo import build_trainer

    args = _args(policy, turns=2, token_credit=0.5)
    trainer = build_trainer(args, _config(tmp_path), [g.task for g in generated])
    rows = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    trainer.current_rows = rows
    rollout = ArrangeRollout(reward=ArrangeReward("default"), turns=2, feedback_style="compact",
                             token_credit=True)
    out = rollout([r["prompt"] for r in rows], trainer)
    tokenizer = trainer.processing_class
    for i, row in enumerate(rows):
        ids, mask = out["completion_ids"][i], out["env_mask"][i]
        assert len(ids) == len(mask) == len(out["token_penalty"][i])
        # model tokens, then one block of feedback tokens, then model tokens again
        runs = [m for j, m in enumerate(mask) if j == 0 or m != mask[j - 1]]
        assert runs == [1, 0, 1]
        assert len(out["turn_scores"][i]) == 2 and len(out["turn_terms"][i]) == 2
        first = [t for t, m in zip(ids, mask) if m][:mask.index(0)]
        feedback = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
        task = generated[0 if i < 2 else 1].task
        text = tokenizer.decode(first, skip_special_tokens=True)
        expected = feedback_message(task, text, ArrangeReward("default").breakdown(
            [None], [text], task=[task])[0], style="compact")
        assert expected in feedback and feedback.rstrip().endswith("assistant")
        assert all(p == 0 for p, m in zip(out["token_penalty"][i], mask) if not m)
    # the env-masked tokens are what TRL leaves out of the loss and the length metric
    assert out["logprobs"] is None


def test_multi_turn_grpo_with_token_credit_trains(tmp_path, policy, generated):
    from spacelm.arrange.grpo import build_trainer

    logs = Logs()
    trainer = build_trainer(_args(policy, turns=2, token_credit=0.5), _config(tmp_path),
                            [g.task for g in generated], callbacks=[logs], judge=length_judge)
    before = _weights(trainer.model)
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    logged = {k for entry in logs.logs for k in entry}
    assert {"arrange/turn_first_reward", "arrange/turn_last_reward",
            "rewards/arrange_return/mean"} <= logged


def test_token_credit_turns_advantages_into_a_token_matrix(tmp_path, policy, generated):
    from spacelm.arrange.grpo import build_trainer

    trainer = build_trainer(_args(policy, token_credit=0.5), _config(tmp_path), [g.task for g in generated])
    rows = [trainer.train_dataset[i] for i in (0, 0, 0, 0)]
    # References as completions: fixed text, so the credit can be checked without sampling luck.
    g = generated[0]
    bad = list(g.reference)
    bad[0] = bad[0]._replace(x=g.task.room.length + 4)
    tokenizer = trainer.processing_class
    texts = [compact_answer(g.reference), compact_answer(bad)] * 2
    out = {"completion_ids": torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts],
        batch_first=True, padding_value=tokenizer.pad_token_id)}
    out["completion_mask"] = torch.stack([torch.arange(out["completion_ids"].shape[1])
                                          < len(tokenizer(t)["input_ids"]) for t in texts]).int()
    out["advantages"] = torch.tensor([0.5, -0.5, 0.5, -0.5])
    advantages = trainer._token_advantages(rows, out)
    assert advantages.shape == out["completion_ids"].shape
    np.testing.assert_array_equal(advantages[0].numpy(), np.full(advantages.shape[1], 0.5))
    from spacelm.arrange.credit import coord_token_owner

    ids = tokenizer(texts[1], add_special_tokens=False)["input_ids"]
    owner = coord_token_owner(ids, tokenizer.decode, g.task.object_ids)
    lowered = (advantages[1, :len(ids)] < -0.5).numpy()
    assert lowered[owner == 0].all() and (owner == 0).sum() >= 4  # every token of the moved object
    assert not lowered[owner < 0].any()  # never a token that places nothing
    assert (advantages[1, len(ids):] == -0.5).all()  # padding keeps the sequence advantage


def test_discounted_return():
    assert DiscountedReturn(0.9).of([1.0, 0.0]) == pytest.approx(1 / 1.9)
    assert DiscountedReturn(0.5, normalize=False).of([1.0, 2.0, 4.0]) == pytest.approx(3.0)
    assert DiscountedReturn(0.9).of([None, 0.4]) == pytest.approx(0.4)
    assert DiscountedReturn(0.9).of([None, None]) is None
    with pytest.raises(ValueError):
        DiscountedReturn(0.0)


def test_feedback_suffix_is_the_template_between_two_assistant_turns(policy):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    suffix = feedback_suffix(tokenizer, [{"role": "user", "content": "place it"}], "it collides")
    assert suffix == "<|im_end|>\n<|im_start|>user\nit collides<|im_end|>\n<|im_start|>assistant\n"


def test_grpo_resumes_from_its_last_checkpoint(tmp_path, policy, generated):
    from spacelm.arrange.grpo import last_checkpoint, train_grpo

    tasks = [g.task for g in generated]
    train_grpo(_args(policy), _config(tmp_path, save_strategy="steps", save_steps=1), tasks)
    assert last_checkpoint(tmp_path / "grpo").endswith("checkpoint-2")
    logs = Logs()
    train_grpo(_args(policy), _config(tmp_path, save_strategy="steps", save_steps=1, max_steps=3), tasks,
               callbacks=[logs])
    steps = [entry for entry in logs.logs if "loss" in entry]
    assert len(steps) == 1  # only step 3 ran: steps 1-2 came from checkpoint-2
    assert last_checkpoint(tmp_path / "grpo").endswith("checkpoint-3")
    info = json.loads((tmp_path / "grpo" / "spacelm_arrange.json").read_text())
    assert info["prompt_style"] == "compact"


def test_config_errors_name_the_key(tmp_path):
    from trl import GRPOConfig

    with pytest.raises(ArrangeConfigError, match=r"x.yaml: arrange.gamma"):
        arrange_args({"gamma": 1.5}, "x.yaml: ")
    with pytest.raises(ArrangeConfigError, match="arrange.turns: must be an integer"):
        arrange_args({"turns": 0})
    with pytest.raises(ArrangeConfigError, match="arrange.trun: unknown key"):
        arrange_args({"trun": 2})
    with pytest.raises(ArrangeConfigError, match="arrange.prompt_style: must be one of"):
        arrange_args({"prompt_style": "long"})
    with pytest.raises(ArrangeConfigError, match="grpo.learning_rate: must be finite"):
        trl_config(GRPOConfig, {"learning_rate": float("inf")}, "", "grpo", output_dir=str(tmp_path))
    with pytest.raises(ArrangeConfigError, match="grpo.num_generation: not a field"):
        trl_config(GRPOConfig, {"num_generation": 4}, "", "grpo", output_dir=str(tmp_path))
    with pytest.raises(ArrangeConfigError, match="grpo.beta: must be >= 0"):
        trl_config(GRPOConfig, {"beta": -0.1}, "", "grpo", output_dir=str(tmp_path))
    config = trl_config(GRPOConfig, {"learning_rate": "1e-6"}, "", "grpo", output_dir=str(tmp_path),
                        use_cpu=True, bf16=False)
    assert config.learning_rate == 1e-6  # PyYAML reads 1e-6 as text


DDP_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import torch
    from spacelm.arrange.config import ArrangeArgs, trl_config
    from spacelm.arrange.generate import generate_tasks
    from spacelm.arrange.grpo import build_trainer
    from spacelm.distributed import launched_run
    from trl import GRPOConfig

    out, policy = sys.argv[1], sys.argv[2]
    args = ArrangeArgs(model=policy, prompt_style="compact")
    config = trl_config(GRPOConfig, {}, "", "grpo", output_dir=out + "/grpo", max_steps=2,
                        per_device_train_batch_size=4, num_generations=4, max_completion_length=16,
                        learning_rate=1e-2, use_cpu=True, report_to=[], logging_steps=1,
                        save_strategy="no", bf16=False, beta=0.0, seed=0, disable_tqdm=True)
    def length_judge(prompts, completions, completion_ids=None, **columns):  # variance, see above
        return [float(len(c[-1]["content"]) % 50) for c in completions]

    def run():  # the trainer is freed when it returns, before the process group is destroyed
        trainer = build_trainer(args, config, [g.task for g in generate_tasks(8, 1, max_objects=2)],
                                judge=length_judge)
        trainer.train()
        digest = hashlib.sha256()
        for name, value in sorted(trainer.model.state_dict().items()):
            digest.update(value.detach().numpy().tobytes())
        rank = trainer.accelerator.process_index
        open(f"{out}/rank{rank}.txt", "w").write(digest.hexdigest() + " " + str(trainer.accelerator.num_processes))

    with launched_run():  # as `spacelm arrange train` ends a launched run
        run()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_grpo_in_two_cpu_processes_ends_with_identical_weights(tmp_path, policy):
    script = tmp_path / "ddp_grpo.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TRL_EXPERIMENTAL_SILENCE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               str(script), str(tmp_path), str(policy)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert rank0 == rank1 and rank0[1] == "2"
    base = hashlib.sha256()
    from transformers import AutoModelForCausalLM

    for _, value in sorted(AutoModelForCausalLM.from_pretrained(policy).state_dict().items()):
        base.update(value.detach().numpy().tobytes())
    assert base.hexdigest() != rank0[0]  # and they trained


def test_arrange_args_round_trip_from_a_yaml_section():
    args = arrange_args({"turns": 3, "room_types": ["office"], "gamma": 1}, model="m")
    assert replace(args, turns=3) == args and args.room_types == ("office",) and args.gamma == 1.0
    assert args.model == "m"
