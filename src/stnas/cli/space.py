"""``stnas space``: inspect a search space and sample from it."""

from __future__ import annotations

import json

import numpy as np

from stnas.cli.common import count, count_list, positive_int, seed_arg, table
from stnas.core.errors import SpaceError
from stnas.core.units import fmt_count
from stnas.space.catalog import list_presets, load_space
from stnas.space.sampling import SAMPLING_MODES


def register(sub) -> None:
    p = sub.add_parser("space", help="inspect a search space, sample architectures",
                       description="Inspect a search space (a preset or a YAML file) and sample from it.")
    ss = p.add_subparsers(dest="space_command", metavar="ACTION", required=True)

    show = ss.add_parser("show", help="stages, ops, branch edges and exact counts")
    show.add_argument("space", metavar="PRESET|FILE", nargs="?",
                      help=f"a preset ({', '.join(list_presets())}), a YAML file or a derived name (auto-...)")
    show.add_argument("--data", metavar="PATH", help="show the space derived for this image folder or .npz "
                      "(the one stnas run --data PATH uses without --preset)")
    show.add_argument("--budget", type=count_list, metavar="B[,B...]", help="with --data: the MAdds budget(s)")
    show.add_argument("--edges", action="store_true", help="also list every branch edge")
    show.set_defaults(func=cmd_show)

    sample = ss.add_parser("sample", help="random architectures with their MAdds and params")
    sample.add_argument("space", metavar="PRESET|FILE")
    sample.add_argument("-n", type=positive_int(10**5), default=5, help="how many (default 5)")
    sample.add_argument("--max-madds", type=count, help="keep only archs with MAdds <= M (e.g. 300M)")
    sample.add_argument("--min-madds", type=count, help="keep only archs with MAdds >= M")
    sample.add_argument("--max-params", type=count, help="keep only archs with params <= P (e.g. 5M)")
    sample.add_argument("--seed", type=seed_arg, default=0, help="random seed (default 0)")
    sample.add_argument("--mode", choices=SAMPLING_MODES.names(), default="topology",
                        help=f"{SAMPLING_MODES.help()} (default topology)")
    sample.add_argument("--json", action="store_true", help="one architecture JSON per line")
    sample.set_defaults(func=cmd_sample)

    ls = ss.add_parser("list", help="the shipped presets")
    ls.set_defaults(func=lambda a: print("\n".join(list_presets())))


def cmd_show(args) -> int:
    if (args.space is None) == (args.data is None):
        raise SpaceError("give a space (PRESET|FILE) or --data PATH, not both")
    if args.data:
        from stnas.pipeline.config import preset_for_data
        name = preset_for_data(args.data, args.budget)
        print(f"derived      for {args.data} by the rule of stnas.space.derive (budget {name.rsplit('-', 1)[1]})")
    s = load_space(name if args.data else args.space)
    lo, hi = s.madds_range()
    print(f"space        {s.name}   (fingerprint {s.fingerprint})")
    print(f"input        {s.input_channels}x{s.input_size}x{s.input_size}, {s.num_classes} classes")
    first = f", first block {s.first_block[0].name} -> {s.first_block[1]} ch" if s.first_block else ""
    print(f"stem         conv3x3 stride {s.stem_stride} -> {s.stem_channels} ch{first}")
    rows = []
    for st in range(s.num_stages):
        edges = [e for e in s.stem_edges if e.stage == st]
        rows.append([st, f"{edges[0].dst}-{edges[-1].dst}", len(edges), edges[-1].c_out, edges[0].stride,
                     s.node_sizes[edges[-1].dst]])
    print("\nstem edges (searchable):")
    print(table(rows, ["stage", "edges", "depth", "channels", "stride", "out size"]))
    print(f"\nstem ops     {', '.join(o.name for o in s.ops)}")
    print(f"branch ops   {', '.join(o.name for o in s.branch_ops)}")
    restricted = [f"x{e.src}->x{e.dst}" for e in s.stem_edges if len(e.allowed) < len(s.ops)]
    if restricted:
        print(f"             (some ops do not fit {len(restricted)} stem edges: {', '.join(restricted)})")
    print(f"branch edges {len(s.branch_edges)} (depth differences {', '.join(map(str, s.branch_depths))})")
    if args.edges:
        print(table([[f"x{b.src}->x{b.dst}", b.c_in, b.c_out, b.stride, len(b.allowed)] for b in s.branch_edges],
                    ["edge", "c_in", "c_out", "stride", "ops"]))
    print(f"head         conv1x1 -> {s.head_channels} ch, pool, linear -> {s.num_classes}")
    print(f"\ntopologies     {s.num_topologies():,}  (2^{len(s.branch_edges)})")
    print(f"architectures  {s.num_architectures():,}")
    print(f"MAdds          {fmt_count(lo)} .. {fmt_count(hi)}  ({lo:,} .. {hi:,})")
    return 0


def cmd_sample(args) -> int:
    if args.n < 1:
        raise SpaceError(f"-n must be at least 1, got {args.n}")
    s = load_space(args.space)
    rng = np.random.default_rng(args.seed)
    constrained = any(v is not None for v in (args.max_madds, args.min_madds, args.max_params))
    for _ in range(args.n):
        if constrained:
            a = s.sample_constrained(rng, args.max_madds, args.min_madds, args.max_params, mode=args.mode)
        else:
            a = s.sample(rng, args.mode)
        if args.json:
            print(json.dumps(a.to_json()))
        else:
            print(f"{a}  MAdds={fmt_count(a.madds)}  params={fmt_count(a.params)}")
    return 0
