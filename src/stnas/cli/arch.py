"""``stnas arch``: validate, describe and draw an architecture."""

from __future__ import annotations

from stnas.cli.common import out_arg, table
from stnas.core.units import fmt_count
from stnas.space.catalog import load_arch


def add_arch_args(p) -> None:
    p.add_argument("arch", metavar="FILE|STRING", help="architecture JSON file or string SPACE:STEM/BRANCHES")
    p.add_argument("--space", metavar="PRESET|FILE", help="the space (default: the preset the architecture names)")


def register(sub) -> None:
    p = sub.add_parser("arch", help="validate, describe or draw an architecture",
                       description="Validate, describe or draw an architecture (JSON file or one-line string).")
    ss = p.add_subparsers(dest="arch_command", metavar="ACTION", required=True)
    show = ss.add_parser("show", help="validate and print the graph with per-stage MAdds and params")
    add_arch_args(show)
    show.add_argument("--json", action="store_true", help="print the architecture JSON instead")
    show.set_defaults(func=cmd_show)
    draw = ss.add_parser("draw", help="draw the DAG as a picture")
    add_arch_args(draw)
    draw.add_argument("-o", "--output", required=True, type=out_arg, help="image file to write (.png, .svg, .pdf)")
    draw.set_defaults(func=cmd_draw)


def cmd_show(args) -> int:
    a = load_arch(args.arch, args.space)
    if args.json:
        import json
        print(json.dumps(a.to_json(), indent=2))
        return 0
    s = a.space
    print(f"architecture  {a}")
    print(f"space         {s.name} (fingerprint {s.fingerprint})")
    print(f"total         MAdds {fmt_count(a.madds)} ({a.madds:,})   params {fmt_count(a.params)} ({a.params:,})"
          f"   branches on {a.num_branches}/{len(s.branch_edges)}")
    rows = [[e.stage, "stem" if e.dst - e.src == 1 else "branch", f"x{e.src}->x{e.dst}", op,
             f"{e.c_in}->{e.c_out}", e.stride, fmt_count(m), fmt_count(p)]
            for e, op, m, p in sorted(s.edge_cost(a), key=lambda r: (r[0].dst, -r[0].src))]
    print()
    print(table(rows, ["stage", "kind", "edge", "op", "channels", "stride", "MAdds", "params"]))
    per_stage = {}
    for e, _, m, p in s.edge_cost(a):
        acc = per_stage.setdefault(e.stage, [0, 0])
        acc[0] += m
        acc[1] += p
    print()
    srows = [["stem+head", "", fmt_count(s.fixed_madds), fmt_count(s.fixed_params)]]
    srows += [[f"stage {st}", s.node_channels[[e.dst for e in s.stem_edges if e.stage == st][-1]],
               fmt_count(m), fmt_count(p)] for st, (m, p) in sorted(per_stage.items())]
    print(table(srows, ["part", "channels", "MAdds", "params"]))
    return 0


def cmd_draw(args) -> int:
    from stnas.pipeline.plots import draw_arch

    a = load_arch(args.arch, args.space)
    path = draw_arch(a, args.output)
    print(f"wrote {path}")
    return 0
