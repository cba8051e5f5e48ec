"""Run by tests/test_train.py under torchrun (or alone): a few supernet training steps on
digits, then each rank writes its parameters to OUT/rank{r}.safetensors."""

import argparse
import os
import sys

import torch

from stnas.core import dist
from stnas.data.datasets import get_dataset
from stnas.nn.supernet import Supernet
from stnas.pipeline.config import DEFAULTS
from stnas.space.catalog import load_space
from stnas.train.engine import SamplingPhase, Trainer, save_weights


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frozen-bn", action="store_true", help="BN in eval mode, plain SGD, no phase")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ctx = dist.setup("cpu")
    space = load_space("digits")
    train_set = get_dataset("digits", "search-train", limit=320)
    torch.manual_seed(0)
    model = Supernet(space)
    recipe = dict(DEFAULTS["supernet"], epochs=2, batch_size=args.batch, checkpoint_every=1000, progress=False,
                  keep_epoch_weights=False, warmup_epochs=0, grad_clip=None, label_smoothing=0.0)
    phase = None
    if not args.frozen_bn:
        phase = SamplingPhase("sgld", samples=2, steps=4, extra=False, lr=0.01,
                              sgld={"temperature": 1.0, "noise_scale": 1e-3, "momentum": 0.9})

    def forward(m, x, step):
        if args.frozen_bn:
            m.eval()
        return m(x, space.sample_at(0, step))

    run_dir = os.path.join(args.out, f"run{ctx.rank}")
    Trainer(model, recipe, train_set, run_dir, ctx, seed=0, forward=forward, phase=phase).fit()
    save_weights(dict(model.named_parameters()), os.path.join(args.out, f"rank{ctx.rank}.safetensors"))
    dist.teardown()


if __name__ == "__main__":
    sys.exit(main())
