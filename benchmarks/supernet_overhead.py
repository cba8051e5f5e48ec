"""Training-step overhead of the weight-sharing supernet over the standalone model.

For the same N architectures (drawn by ``space.sample_at(seed, i)``), time one training
step (zero_grad, forward, cross-entropy, backward, SGD step with momentum and weight
decay) of ``supernet(x, arch)``, with the optimizer over *all* supernet parameters as in
supernet training, and of ``build_model(arch)``. The two are measured interleaved (the
order alternating every step) after a warmup, on one fixed random batch, so that the
drift of a noisy machine hits both alike. Reported: per architecture the median step
times and their ratio; overall the median of the per-architecture ratios (goal <= 1.05)
and the median absolute times. The 1-minute load average before and after is recorded:
other processes on a small machine (more runnable threads than cores) make the
absolute times several-fold slower and the ratios noisy.

Example::

    python benchmarks/supernet_overhead.py --preset fashion-mnist --archs 8 --steps 10

Writes benchmarks/results/supernet_overhead.json (see --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from stnas.core.units import fmt_count
from stnas.core.verified import write_json
from stnas.nn.model import build_model
from stnas.nn.supernet import Supernet
from stnas.space.catalog import load_space

HERE = Path(__file__).resolve().parent


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="fashion-mnist", help="search space preset or YAML file")
    p.add_argument("--archs", type=int, default=8, help="number of random architectures")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model and architecture")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model and architecture")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for models and input")
    p.add_argument("--sharing", action="store_true",
                   help="kernel and width sharing in the supernet (the tuned default of stnas run)")
    p.add_argument("--seed", type=int, default=0, help="architecture seed (space.sample_at(seed, i))")
    p.add_argument("--out", type=Path, default=HERE / "results" / "supernet_overhead.json", help="JSON output")
    return p


def make_step(model: nn.Module, opt: torch.optim.Optimizer, fn, x: torch.Tensor, y: torch.Tensor):
    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(fn(x), y).backward()
        opt.step()
        return time.perf_counter() - t0
    return step


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    space = load_space(args.preset)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, space.input_channels, space.input_size, space.input_size).to(memory_format=fmt)
    y = torch.randint(0, space.num_classes, (args.batch,))
    sgd = dict(lr=0.01, momentum=0.9, weight_decay=4e-5)
    supernet = Supernet(space, kernel_sharing=args.sharing, width_sharing=args.sharing).train().to(memory_format=fmt)
    super_opt = torch.optim.SGD(supernet.parameters(), **sgd)

    load_before = os.getloadavg()
    rows = []
    for i in range(args.archs):
        arch = space.sample_at(args.seed, i)
        model = build_model(arch).train().to(memory_format=fmt)
        steps = {"supernet": make_step(supernet, super_opt, lambda t, a=arch: supernet(t, a), x, y),
                 "standalone": make_step(model, torch.optim.SGD(model.parameters(), **sgd), model, x, y)}
        for _ in range(args.warmup):
            for s in steps.values():
                s()
        times: dict[str, list[float]] = {"supernet": [], "standalone": []}
        for r in range(args.steps):
            for name in (("supernet", "standalone") if r % 2 == 0 else ("standalone", "supernet")):
                times[name].append(steps[name]())
        sup, std = statistics.median(times["supernet"]), statistics.median(times["standalone"])
        rows.append({"arch": str(arch), "madds": space.madds(arch), "params": space.params(arch),
                     "branches": arch.num_branches, "standalone_ms": 1e3 * std, "supernet_ms": 1e3 * sup,
                     "ratio": sup / std})
        print(f"[{i + 1}/{args.archs}] {arch}  {1e3 * std:.1f} / {1e3 * sup:.1f} ms  ratio {sup / std:.3f}",
              flush=True)

    summary = {
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "min_ratio": min(r["ratio"] for r in rows), "max_ratio": max(r["ratio"] for r in rows),
        "median_standalone_ms": statistics.median(r["standalone_ms"] for r in rows),
        "median_supernet_ms": statistics.median(r["supernet_ms"] for r in rows),
        "supernet_params": supernet.num_params_total(),
    }
    result = {
        "benchmark": "supernet_overhead",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]]},
        "summary": summary, "archs": rows,
    }

    print(f"\n{args.preset}, batch {args.batch}, {args.steps} steps x {args.archs} archs, "
          f"{args.threads} threads, {'channels_last' if args.channels_last else 'contiguous'}, "
          f"{'kernel and width sharing' if args.sharing else 'no sharing'}, "
          f"torch {torch.__version__}, "
          f"load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'architecture':<40} {'MAdds':>7} {'params':>7} {'br':>3} {'alone ms':>9} {'super ms':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['arch']:<40} {fmt_count(r['madds']):>7} {fmt_count(r['params']):>7} {r['branches']:>3} "
              f"{r['standalone_ms']:>9.1f} {r['supernet_ms']:>9.1f} {r['ratio']:>6.3f}")
    print(f"{'median':<40} {'':>7} {'':>7} {'':>3} {summary['median_standalone_ms']:>9.1f} "
          f"{summary['median_supernet_ms']:>9.1f} {summary['median_ratio']:>6.3f}")
    print(f"ratio range {summary['min_ratio']:.3f} .. {summary['max_ratio']:.3f} (goal: median <= 1.05)")
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
