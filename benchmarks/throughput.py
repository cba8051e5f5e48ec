"""Training and evaluation throughput of the supernet on synthetic data (any preset, CPU or CUDA).

For a fixed set of uniformly sampled architectures, times supernet training steps
(forward + backward + SGD step, one architecture per step as in supernet training) and
eval forwards, with channels_last and bf16 autocast on or off. Prints a table of
images/second (median over steps) and writes JSON.

    python benchmarks/throughput.py --preset fashion-mnist --device cpu --batch 128
    python benchmarks/throughput.py --preset paper --device cuda --batch 256   # ImageNet-sized, synthetic
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from stnas.core.verified import write_json
from stnas.nn.supernet import Supernet
from stnas.space.catalog import load_space


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(space, device, batch, steps, warmup, channels_last, amp, seed=0):
    torch.manual_seed(seed)
    net = Supernet(space).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, space.input_channels, space.input_size, space.input_size, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, space.num_classes, (batch,), device=device)
    archs = [space.sample_at(seed, s) for s in range(warmup + steps)]
    train_t, eval_t = [], []
    for s, a in enumerate(archs):
        net.train()
        _sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(net(x, a).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if s >= warmup:
            train_t.append(time.perf_counter() - t)
        net.eval()
        _sync(device)
        t = time.perf_counter()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            net(x, a)
        _sync(device)
        if s >= warmup:
            eval_t.append(time.perf_counter() - t)
    madds = statistics.median(space.madds(a) for a in archs)
    return {"train_img_s": batch / statistics.median(train_t), "eval_img_s": batch / statistics.median(eval_t),
            "median_madds": madds,
            "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fashion-mnist")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--variants", default="plain,channels_last,channels_last+bf16",
                    help="comma list of plain, channels_last, bf16, channels_last+bf16")
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/results/throughput_<preset>_<device>.json)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    space = load_space(args.preset)
    rows = []
    for v in args.variants.split(","):
        cl, amp = "channels_last" in v, "bf16" in v
        r = measure(space, device, args.batch, args.steps, args.warmup, cl, amp)
        rows.append({"variant": v, **r})
        print(f"{v:<22} train {r['train_img_s']:>10,.0f} img/s   eval {r['eval_img_s']:>10,.0f} img/s"
              + (f"   peak {r['peak_mem_gib']:.1f} GiB" if r["peak_mem_gib"] else ""), flush=True)
    base = rows[0]["train_img_s"]
    print(f"\n{'variant':<22}{'train img/s':>14}{'eval img/s':>14}{'train x':>9}")
    for r in rows:
        print(f"{r['variant']:<22}{r['train_img_s']:>14,.0f}{r['eval_img_s']:>14,.0f}{r['train_img_s'] / base:>9.2f}")
    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else platform.processor() or platform.machine())
    meta = {"preset": args.preset, "device": dev_name, "batch": args.batch, "steps": args.steps,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "median_madds": rows[0]["median_madds"]}
    out = Path(args.out or Path(__file__).parent / "results" / f"throughput_{args.preset}_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"meta": meta, "results": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
