"""Layout generation with RL (MetaSpatial's half of spacelm): tasks, prompts, answers, rewards.

- ``task``: ``ArrangeTask`` (room, preference, objects with sizes and relations), JSONL I/O.
- ``metaspatial_import``: MetaSpatial's IDesign scene graphs, HF parquet rows, room descriptions.
- ``prompts``: the prompt (MetaSpatial's sections, a valid example, rotation) and revision turns.
- ``answer``: lenient ``<think>/<answer>`` parsing with diagnostics; placements -> scene ``Layout``.
- ``physics``: batched collision, bounds, support and relation checks with tolerances.
- ``rewards``: TRL-shaped format, physics and combined rewards, MetaSpatial's formula, phases.
- ``judge``: render-and-judge reward S with any OpenAI-compatible vision endpoint.
- ``evaluate``: MetaSpatial's results table over completions.
- ``generate`` / ``room_templates``: solvable tasks with reference solutions, no LLM needed.

Modules are imported directly (``from spacelm.arrange.rewards import FormatReward``); this package
imports nothing so that ``import spacelm.arrange`` stays cheap.
"""
