"""Run by tests/test_proxy.py under torchrun: scores the given architectures of RUN_DIR in
stabilized mode and under the final weights; rank 0 writes the results to OUT."""

import json
import sys
from dataclasses import asdict

import torch
from safetensors.torch import load_file

from stnas.core import dist
from stnas.pipeline.search import proxy_for_run


def main():
    run_dir, out, archs = sys.argv[1], sys.argv[2], sys.argv[3:]
    torch.set_num_threads(1)
    ctx = dist.setup("cpu")
    proxy = proxy_for_run(run_dir, mode="stabilized", ctx=ctx)
    scores = proxy.score(archs)
    evaluations = proxy.evaluations
    weights = proxy.evaluate_weights(load_file(f"{run_dir}/supernet.safetensors"), archs)
    counts = dist.all_gather_objects(evaluations, ctx.world_size)
    if ctx.is_main:
        with open(out, "w") as f:
            json.dump({"stabilized": [asdict(s) for s in scores], "weights": [asdict(s) for s in weights],
                       "evaluations": counts}, f)
    dist.teardown()


if __name__ == "__main__":
    sys.exit(main())
