"""Runs dralign trainings one after another in one torchrun process group (the start-up is paid
once), for tests/train/test_train_fsdp2.py: `torchrun ... fsdp2_driver.py JOBS.json`, where the
file holds a list of {"options": {...TrainConfig keys...}, "stop_after": N or null}; a job with
`stop_after` is sent SIGTERM after that step (every process), as an interrupted run would be."""

import json
import os
import signal
import sys

from dralign.config import build
from dralign.train import train
from dralign.train.config import TrainConfig


def main(path: str) -> None:
    for job in json.loads(open(path).read()):
        stop = job.get("stop_after")

        def hook(step, record, stop=stop):
            if stop and step == stop:
                os.kill(os.getpid(), signal.SIGTERM)

        result = train(build(TrainConfig, job["options"]), callbacks=[hook])
        print(
            f"rank {os.environ.get('RANK')}: {job['options']['output_dir']} {result.status} {result.steps}", flush=True
        )


if __name__ == "__main__":
    main(sys.argv[1])
