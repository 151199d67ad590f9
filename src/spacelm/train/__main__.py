"""``python -m spacelm.train CONFIG.yaml [--stage 1|2|both]``: the entry point for launchers.

``accelerate launch -m spacelm.train CONFIG.yaml`` and ``torchrun --nproc_per_node N -m spacelm.train
CONFIG.yaml`` start one such process per device; ``spacelm train`` is the same call for one process.
"""

import argparse
import logging

from spacelm.train.args import STAGES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spacelm.train", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="YAML run config (see configs/)")
    parser.add_argument("--stage", choices=STAGES, default="both")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from spacelm.distributed import launched_run
    from spacelm.train.sft import train_from_yaml

    with launched_run():
        train_from_yaml(args.config, stage=args.stage)


if __name__ == "__main__":
    main()
