"""`spacelm arrange demo` end to end at toy size: every stage runs, the metrics file holds one entry
per policy with the fractions the README reports, and the before/after picture is written."""

import json

import pytest

pytest.importorskip("trl")


def test_demo_writes_metrics_for_every_policy_and_a_picture(tmp_path, monkeypatch):
    import spacelm.arrange_demo as demo

    # Toy sizes: a 1-layer policy, a 40 s training budget split between SFT and GRPO.
    monkeypatch.setattr(demo, "POLICY", {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 400})
    monkeypatch.setattr(demo, "GRPO", {**demo.GRPO, "per_device_train_batch_size": 4, "num_generations": 4,
                                       "max_completion_length": 24})
    monkeypatch.setattr(demo, "EVAL_RESERVE_S", 0.0)
    figures = demo.run_demo(tmp_path / "demo", minutes=1.0, train_tasks=16, test_tasks=4, max_objects=2)
    saved = json.loads((tmp_path / "demo" / "arrange_demo_metrics.json").read_text())
    assert saved["policies"].keys() == {"base", "sft", "grpo"} == figures["policies"].keys()
    for row in saved["policies"].values():
        assert row["completions"] == 4 and 0.0 <= row["format"] <= 1.0
        assert {"format", "collision", "out_of_bounds", "reward"} <= row.keys()
    assert saved["curves"]["sft"] and saved["curves"]["grpo"]  # logged points of both runs
    assert saved["curves"]["grpo"][-1]["step"] >= 1
    assert (tmp_path / "demo" / "held_out_before_after.png").is_file()
    assert saved["picture"].endswith("held_out_before_after.png")
    assert (tmp_path / "demo" / "grpo" / "spacelm_arrange.json").is_file()
    with pytest.raises(FileExistsError):
        demo.run_demo(tmp_path / "demo", minutes=1.0, train_tasks=16, test_tasks=4, max_objects=2)
