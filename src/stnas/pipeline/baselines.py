"""Pipeline stage: standard networks as baselines, trained and evaluated as stnas's picks are.

For each budget (:class:`stnas.core.units.Budget`: MAdds, params and/or latency measured here),
every configured baseline (``baselines.families`` × ``baselines.forms``,
:mod:`stnas.nn.baselines`) that fits it is trained from scratch by retraining's own machinery
(:func:`stnas.pipeline.retrain.fit_model`): the ``retrain`` recipe, data, augmentation and
seeds, checkpoints and exact resume. A network that fits several budgets is trained once.

The comparison's evaluation, the same for every network of a table, stnas's picks included:
every BatchNorm's running statistics are re-estimated (:func:`stnas.train.recalibrate.recalibrate_bn`:
a cumulative average, every other layer in eval mode) over the first ``baselines.recal_batches``
batches of one seeded pass over the training images without augmentation (all of them when
there are fewer), then the test split is evaluated; the numbers before the recalibration are
kept beside (``*_before_recal``). Without it, mnasnet (BN momentum 0.0003) and mobilenet_v3
(0.01) sit near chance after a short recipe. The retrain stage is unchanged (its model card
and model are not recalibrated), so a pick's top-1 here can differ from the retrain table's.

Seeds: ``baselines.seeds`` = n trains every network under seeds seed, ..., seed + n - 1, the
data split and subsets staying those of ``seed``; a pick under ``seed`` is the run's retrained
model, under the others it is retrained here. Latency: every network of the tables is measured
end to end with the latency tables' settings (the ``latency`` section: runtime, device, batch,
threads, timing; :mod:`stnas.latency.measure`), interleaved in one session. Under a latency
budget a network fits by a measurement of its own (the width fit measures each width it tries).

Files, under ``ROOT`` (``RUN/baselines``)::

    <network key>/seed_<s>/       a run directory per (network, seed): baseline.json, config.yaml,
                                  checkpoints/, metrics.jsonl, tb/, model.safetensors (after the
                                  recalibration), model_card.json (with the weights' SHA-256)
    pick-<arch slug>/seed_<s>/    a pick retrained under an extra seed (a retrain run directory)
    pick-<arch slug>/eval_seed_<s>.json   a pick's evaluation
    latency.json                  the measured latency of every network (reused when resumed)
    baselines.json                the table: per budget, one row per network (checksummed)

The table (``baselines.json``; :func:`run_baselines` returns it): ``format``, ``version``,
``dataset``, ``preset``, ``input`` (channels, size, classes), ``recipe`` (the retrain section),
``seeds``, ``recal_batches``, ``latency_settings``, ``train_images`` and ``budgets``: per budget
its ``budget`` (madds, params, latency_ms, label), ``unfit`` (entry, form, the MAdds of its
smallest network, why) and ``rows``, stnas's pick first where there is one. A row: ``name``,
``kind`` (stnas | baseline), ``form`` (searched | defined | adapted), ``arch`` or ``key`` and
``spec``, ``madds``, ``params``, ``measured_latency`` (median_ms, iqr_ms, min_ms, max_ms, calls),
the mean over seeds of ``top1``, ``test_loss`` and ``top1_before_recal``, the sd over seeds
``top1_sd`` and ``test_loss_sd`` (null for one seed), ``seeds`` (per seed: the ``PER_SEED``
fields, ``wall_s`` the training's), and beside a pick ``d_top1`` and ``d_test_loss`` (the
row's mean minus the pick's).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import torch

from stnas.core import dist
from stnas.core.checkpoint import CheckpointManager
from stnas.core.errors import CheckpointError, ConfigError
from stnas.core.fileio import sha256_file
from stnas.core.rundir import BASELINE, CONFIG, RunDir
from stnas.core.units import Budget, fmt_count, parse_budget
from stnas.core.verified import read_json, write_json
from stnas.core.weights import load_weights, save_weights
from stnas.deploy.card import read_card, write_card
from stnas.deploy.export import FILE_DIGESTS, arch_slug, load_model
from stnas.latency.measure import device_info, measure_models, runtime_info
from stnas.nn.baselines import BASELINES, WIDTHS, Baseline, build, cost, fit, within
from stnas.nn.model import build_model
from stnas.pipeline.config import ON_EXISTING_RUN, check_same_settings
from stnas.pipeline.latency import MIN_REPEATS
from stnas.pipeline.retrain import check_delivered, fit_model, retrain, retrain_splits, training_record
from stnas.pipeline.scaling import baselines_auto
from stnas.pipeline.scaling import recal_batches as scaled_recal_batches
from stnas.pipeline.settings import data_spec
from stnas.space.catalog import load_arch, load_space
from stnas.train.engine import evaluate, use_amp, use_channels_last
from stnas.train.recalibrate import fixed_batches, recalibrate_bn

FORMAT, VERSION = "stnas-baselines", 1
TABLE, LATENCY, WEIGHTS = "baselines.json", "latency.json", "model.safetensors"
EVAL_BATCH = 256  # as retraining evaluates
PER_SEED = ("top1", "test_loss", "top1_before_recal", "test_loss_before_recal", "wall_s")  # a row's per-seed fields


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def stage_enabled(cfg: dict, train_images: int) -> bool:
    """Whether ``stnas run`` runs this stage: ``baselines.enabled``; null: where retraining is
    small (:func:`stnas.pipeline.scaling.baselines_auto`). A time budget may set it to false
    (:mod:`stnas.pipeline.budget`)."""
    on = cfg["baselines"]["enabled"]
    return on if on is not None else baselines_auto(train_images, cfg["retrain"]["epochs"])


def seeded(cfg: dict, seed: int) -> dict:
    """``cfg`` with training seed ``seed``; the data split and subsets stay ``cfg``'s."""
    out = copy.deepcopy(cfg)
    out["data"]["split_seed"] = data_spec(cfg).data_seed
    out["seed"] = seed
    return out


def input_shape(cfg: dict, space) -> tuple[int, int, int]:
    """(channels, side, classes) of the networks: those of the data, as retraining feeds it."""
    return space.input_channels, cfg["data"]["image_size"] or space.input_size, space.num_classes


# ------------------------------------------------------------------ which networks
def _measurer(settings: dict, found: dict):
    """``measure(b) -> ms``: one network timed alone with the latency settings (cached by key)."""
    def measure(b: Baseline) -> float:
        if b.key not in found:
            with torch.random.fork_rng(devices=[]):
                found[b.key] = measure_models([(lambda: build(b), (b.channels, b.size, b.size))],
                                              settings["runtime"], settings["device"], settings["batch"],
                                              settings["threads"], settings["warmup"],
                                              max(settings["repeats"], MIN_REPEATS), settings["rounds"])[0]["median_ms"]
        return found[b.key]
    return measure


def _fits(budget: Budget, measure):
    cheap = within(budget.madds, budget.params)
    return lambda b: cheap(b) and (budget.latency_ms is None or measure(b) <= budget.latency_ms)


def _why(entry: str, form: str, shape: tuple, budget: Budget, measure) -> str:
    """Why nothing of ``entry`` in ``form`` fits: the smallest network and the limit it breaks."""
    b = Baseline(entry, form, *shape, width=WIDTHS[0] if form == "adapted" and BASELINES.get(entry).knob else None)
    m, p = cost(b)
    if budget.madds is not None and m > budget.madds:
        return f"{b.name}: {fmt_count(m)} MAdds"
    if budget.params is not None and p > budget.params:
        return f"{b.name}: {fmt_count(p)} params"
    return f"{b.name}: {measure(b):.3f} ms"


def check_fit(plans: list[dict]) -> None:
    """Raises ConfigError (one line) when a budget of ``plans`` has no baseline that fits."""
    for p in plans:
        if not p["networks"]:
            least = min(p["unfit"], key=lambda u: u["madds"], default=None)
            hint = f" (the smallest, {least['why']})" if least else ""
            raise ConfigError(f"no baseline fits budget {p['budget'].label}{hint}; give a larger budget or "
                              f"other baselines.families / baselines.forms")


def plan(cfg: dict, budgets: list[Budget], shape: tuple[int, int, int]) -> list[dict]:
    """Per budget: the distinct networks that fit (``networks``, by MAdds) and, for each
    (entry, form) that does not, why (``unfit``)."""
    bl = cfg["baselines"]
    families = bl["families"] or list(BASELINES.names())
    measure = _measurer(cfg["latency"], {})
    out = []
    for budget in budgets:
        test, nets, unfit = _fits(budget, measure), {}, []
        for entry in families:
            for form in bl["forms"]:
                b = fit(entry, form, *shape, test)
                if b is None:
                    smallest = Baseline(entry, form, *shape, width=WIDTHS[0] if form == "adapted"
                                        and BASELINES.get(entry).knob else None)
                    unfit.append({"entry": entry, "form": form, "madds": cost(smallest)[0],
                                  "why": _why(entry, form, shape, budget, measure)})
                else:
                    nets.setdefault(b.key, b)
        out.append({"budget": budget, "networks": sorted(nets.values(), key=lambda b: (cost(b), b.key)),
                    "unfit": unfit})
    return out


# ------------------------------------------------------------------ training and evaluation
def recalibrated_test(model, cfg: dict, space, ctx: dist.Context, recal_batches: int, sets=None) -> dict:
    """The comparison's evaluation (module docstring) of a trained ``model``, in place.

    Args:
        sets: (train without augmentation, test); default ``retrain_splits(cfg, space, augment=False)``.
    """
    recipe = cfg["retrain"]
    cl, amp = use_channels_last(recipe), use_amp(recipe, ctx.device)
    recal_set, test_set = sets or retrain_splits(cfg, space, augment=False)
    model.eval()
    before = evaluate(model, test_set, EVAL_BATCH, ctx, cl, amp)
    seen, after = 0, before
    if recal_batches:
        def put(x):
            x = x.to(ctx.device)
            return x.contiguous(memory_format=torch.channels_last) if cl else x

        count = scaled_recal_batches(recal_batches, len(recal_set), recipe["batch_size"])
        batches = fixed_batches(recal_set, recipe["batch_size"], count, cfg["seed"], put=put,
                                name="the training split")
        recalibrate_bn(model, batches, amp)
        seen = sum(len(x) for x in batches)
        after = evaluate(model, test_set, EVAL_BATCH, ctx, cl, amp)
    return {"top1": after["top1"], "top5": after["top5"], "test_loss": after["loss"], "test_images": after["n"],
            "top1_before_recal": before["top1"], "top5_before_recal": before["top5"],
            "test_loss_before_recal": before["loss"], "recal_batches": recal_batches, "recal_images": seen}


def read_spec(run_dir: str | Path) -> Baseline:
    """The network a baseline run directory trains (its checksummed ``baseline.json``)."""
    return Baseline.from_json(read_json(RunDir(run_dir).baseline, "baseline spec"), f"{run_dir}/{BASELINE}")


def load_baseline(run_dir: str | Path):
    """(model in eval mode, spec) of a finished baseline run: ``build(spec)`` with its
    safetensors weights (checksum verified)."""
    spec = read_spec(run_dir)
    model = build(spec)
    tensors, _ = load_weights(Path(run_dir) / WEIGHTS, what="baseline weights")
    state = model.state_dict()  # its metadata carries module versions (mnasnet needs them)
    if set(tensors) != set(state):
        raise ConfigError(f"{run_dir}/{WEIGHTS} does not hold the weights of {spec.name}")
    state.update(tensors)
    model.load_state_dict(state)
    return model.eval(), spec


def check_baseline_runs(root: str | Path) -> list:
    """Verifies what a resumed baselines stage reads in ``root`` before any training: each
    finished network's spec, card and weights, each unfinished one's latest checkpoint, the
    picks' retrainings (:func:`stnas.pipeline.retrain.check_delivered`) and evaluations, and
    the latency measurements. Returns the picks' exact rebuilds (``Rebuild``); writes nothing.

    Raises:
        CheckpointError: one line naming a damaged file, and what to do.
    """
    root, rebuilds = Path(root), []
    for d in sorted(p for p in root.glob("*/seed_*") if p.is_dir()):
        run = RunDir(d)
        if run.baseline.is_file():
            read_spec(d)
            if not run.card.is_file():
                CheckpointManager(d).verify_latest()
                continue
            digest = read_card(run.card).get(FILE_DIGESTS, {}).get(WEIGHTS)
            try:
                if digest is None:  # a card of an older stnas: the tensors' own checksum
                    load_weights(d / WEIGHTS, what="baseline weights")
                elif not (d / WEIGHTS).is_file() or sha256_file(d / WEIGHTS) != digest:
                    raise CheckpointError(f"baseline weights {d / WEIGHTS} are missing or damaged (SHA-256 "
                                          f"mismatch with {run.card.name})")
            except CheckpointError as exc:
                raise CheckpointError(f"{exc}: remove {d} and resume the run to train it again") from None
        elif run.card.is_file():
            rebuilds += [r for r in [check_delivered(d)] if r is not None]
        else:
            CheckpointManager(d).verify_latest()
    for f in sorted(root.glob("pick-*/eval_seed_*.json")):
        read_json(f, "pick evaluation")
    if (root / LATENCY).is_file():
        read_json(root / LATENCY, "latency measurements")
    return rebuilds


def train_baseline(b: Baseline, cfg: dict, run_dir: str | Path, ctx: dist.Context) -> dict:
    """Trains ``b`` with ``cfg``'s retrain recipe and seed into ``run_dir`` (resumed when its
    config is there; a finished run is read back) and evaluates it; returns its model card."""
    space = load_space(cfg["preset"])
    run = RunDir(run_dir)
    with run.lock(ctx.is_main):
        resume = run.config.is_file()
        run.guard(resume, needs=(CONFIG, BASELINE))
        dist.barrier(ctx.world_size)
        if resume:
            saved = read_spec(run_dir)
            if saved != b:
                raise ConfigError(f"{run_dir} trains {saved.name}, not {b.name}; choose another --out")
            check_same_settings(run_dir, cfg, ON_EXISTING_RUN["baselines"]["keep"])
            if run.card.is_file():
                return read_card(run.card)
        train_set, test_set = retrain_splits(cfg, space)
        if ctx.is_main:
            write_json(run.baseline, b.to_json())
            run.save_config(cfg)  # last: a run with a config can be resumed
        model, summary, start = fit_model(lambda: build(b), cfg, run.path, resume, ctx, train_set,
                                          desc=f"baseline {b.key}")
        t = time.perf_counter()
        ev = recalibrated_test(model, cfg, space, ctx, cfg["baselines"]["recal_batches"],
                               (retrain_splits(cfg, space, augment=False)[0], test_set))
        test = {"top1": ev["top1"], "top5": ev["top5"], "loss": ev["test_loss"], "n": ev["test_images"]}
        madds, params = cost(b)
        card = {"baseline": b.name, "key": b.key, "spec": b.to_json(), "builder": b.family.builder,
                "width": b.multiplier, "stem_stride_1": b.stem_stride_1, "madds": madds, "params": params,
                **training_record(cfg, summary, start, resume, ctx, train_set, test, time.perf_counter() - t),
                **{k: ev[k] for k in ("top1_before_recal", "top5_before_recal", "test_loss_before_recal",
                                      "recal_batches", "recal_images")},
                "weights": f"{WEIGHTS}, after the BN recalibration"}
        if ctx.is_main:
            path = save_weights(model.state_dict(), run.path / WEIGHTS,
                                {"format": "stnas-baseline", "baseline": b.name})
            card[FILE_DIGESTS] = {WEIGHTS: sha256_file(path)}  # what a resumed run checks them by
            write_card(run.card, card)
        dist.barrier(ctx.world_size)
        return card


def evaluate_pick(arch: str, retrain_dir: Path, cfg: dict, out: Path, ctx: dist.Context) -> dict:
    """A pick's evaluation from its retrained model (cached in ``out``)."""
    k = cfg["baselines"]["recal_batches"]
    if out.is_file():
        found = read_json(out, "pick evaluation")
        if found.get("arch") == arch and found.get("seed") == cfg["seed"] and found.get("recal_batches") == k:
            return found
    space = load_space(cfg["preset"])
    model = load_model(RunDir(retrain_dir).model, load_arch(arch, cfg["preset"]).space).to(ctx.device)
    res = {"arch": arch, "seed": cfg["seed"], **recalibrated_test(model, cfg, space, ctx, k)}
    if ctx.is_main:
        write_json(out, res)
    dist.barrier(ctx.world_size)
    return res


# ------------------------------------------------------------------ latency
def _latency_identity(settings: dict) -> dict:
    return {"device": device_info(settings["device"]), "runtime": runtime_info(settings["runtime"], settings["device"]),
            **{k: settings[k] for k in ("batch", "threads", "warmup", "rounds")},
            "repeats": max(settings["repeats"], MIN_REPEATS)}


def measure_latency(models: dict, settings: dict, path: Path) -> dict:
    """{key: summary} of ``models`` ({key: (factory, shape)}), measured interleaved; networks
    measured before with the same settings (``path``) are reused."""
    ident = _latency_identity(settings)
    found = read_json(path, "latency measurements") if path.is_file() else {}
    have = found.get("networks", {}) if found.get("settings") == ident else {}
    todo = [k for k in models if k not in have]
    if todo:
        with torch.random.fork_rng(devices=[]):
            res = measure_models([models[k] for k in todo], settings["runtime"], settings["device"],
                                 settings["batch"], settings["threads"], settings["warmup"], ident["repeats"],
                                 settings["rounds"])
        have = {**have, **dict(zip(todo, res))}
        write_json(path, {"settings": ident, "networks": have})
    return {k: have[k] for k in models}


# ------------------------------------------------------------------ the table
def _row(per_seed: dict, **fields) -> dict:
    def mean_sd(key):
        xs = [r[key] for r in per_seed.values()]
        return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)
    (top1, top1_sd), (loss, loss_sd) = mean_sd("top1"), mean_sd("test_loss")
    return {**fields, "top1": top1, "top1_sd": top1_sd, "test_loss": loss, "test_loss_sd": loss_sd,
            "top1_before_recal": mean_sd("top1_before_recal")[0], "seeds": per_seed}


def shared_plan(cfg: dict, budgets: list[Budget], ctx: dist.Context) -> list[dict]:
    """:func:`plan` made by the main process and shared (latency fits are measured once)."""
    plans = plan(cfg, budgets, input_shape(cfg, load_space(cfg["preset"]))) if ctx.is_main else None
    return dist.all_gather_objects(plans, ctx.world_size)[0]


def run_baselines(cfg: dict, root: str | Path, budgets: list[Budget], picks: dict | None = None,
                  ctx: dist.Context | None = None, plans: list[dict] | None = None, log=_log) -> dict:
    """Trains, evaluates and measures the baselines that fit each budget (and each pick under
    the extra seeds) into ``root``; returns the table, written to ``root/baselines.json``.

    Args:
        budgets: one table each.
        picks: budget label -> ``{"arch", "retrain_dir"}``: stnas's pick and its retraining.
        plans: :func:`shared_plan` of ``budgets``, when the caller made it already.
    """
    ctx = ctx or dist.Context()
    root, picks = Path(root), picks or {}
    shape = input_shape(cfg, load_space(cfg["preset"]))
    side = (shape[0], shape[1], shape[1])
    plans = plans or shared_plan(cfg, budgets, ctx)
    bl = cfg["baselines"]
    seeds = [cfg["seed"] + i for i in range(bl["seeds"])]
    nets = {b.key: b for p in plans for b in p["networks"]}
    cards = {}
    for n, b in enumerate(nets.values()):
        for s in seeds:
            card = train_baseline(b, seeded(cfg, s), root / b.key / f"seed_{s}", ctx)
            cards[(b.key, s)] = card
            if ctx.is_main:
                log(f"baselines {n + 1}/{len(nets)}: {b.name} ({fmt_count(card['madds'])} MAdds) seed {s}: "
                    f"test top-1 {card['top1']:.4f} (before BN recalibration {card['top1_before_recal']:.4f})")
    pick_res = {}
    for pk in picks.values():
        slug = f"pick-{arch_slug(load_arch(pk['arch'], cfg['preset']))}"
        for s in seeds:
            if (pk["arch"], s) in pick_res:
                continue
            c = seeded(cfg, s)
            src = Path(pk["retrain_dir"])
            if s != cfg["seed"]:
                src = root / slug / f"seed_{s}"
                retrain(pk["arch"], c, src, resume=RunDir(src).config.is_file(), ctx=ctx)
            res = evaluate_pick(pk["arch"], src, c, root / slug / f"eval_seed_{s}.json", ctx)
            pick_res[(pk["arch"], s)] = {**res, "wall_s": read_json(RunDir(src).card, "model card")["wall_s"]}
    table = {}
    if ctx.is_main:
        models = {b.key: (lambda b=b: build(b), side) for b in nets.values()}
        models.update({f"stnas:{pk['arch']}": (lambda a=pk["arch"]: build_model(load_arch(a, cfg["preset"])), side)
                       for pk in picks.values()})
        latency = measure_latency(models, cfg["latency"], root / LATENCY)
        table = _table(cfg, plans, seeds, cards, picks, pick_res, latency)
        write_json(root / TABLE, table)
    dist.barrier(ctx.world_size)
    return table


def _table(cfg, plans, seeds, cards, picks, pick_res, latency) -> dict:
    out = []
    for p in plans:
        label, rows = p["budget"].label, []
        pk = picks.get(label)
        if pk:
            a = load_arch(pk["arch"], cfg["preset"])
            per = {str(s): {k: pick_res[(pk["arch"], s)][k] for k in PER_SEED} for s in seeds}
            rows.append(_row(per, name="stnas pick", kind="stnas", form="searched", arch=pk["arch"], madds=a.madds,
                             params=a.params, measured_latency=latency[f"stnas:{pk['arch']}"]))
        for b in p["networks"]:
            per = {str(s): {k: cards[(b.key, s)][k] for k in PER_SEED} for s in seeds}
            m, par = cost(b)
            rows.append(_row(per, name=b.name, kind="baseline", form=b.form, key=b.key, spec=b.to_json(),
                             madds=m, params=par, measured_latency=latency[b.key]))
        if pk:
            for r in rows[1:]:
                r["d_top1"], r["d_test_loss"] = r["top1"] - rows[0]["top1"], r["test_loss"] - rows[0]["test_loss"]
        out.append({"budget": p["budget"].to_json(), "rows": rows, "unfit": p["unfit"]})
    lat = cfg["latency"]
    return {"format": FORMAT, "version": VERSION, "dataset": cfg["data"]["dataset"], "preset": cfg["preset"],
            "input": dict(zip(("channels", "size", "classes"), input_shape(cfg, load_space(cfg["preset"])))),
            "recipe": dict(cfg["retrain"]), "seeds": seeds, "recal_batches": cfg["baselines"]["recal_batches"],
            "latency_settings": {k: lat[k] for k in ("runtime", "device", "batch", "threads")},
            "train_images": next(iter(cards.values()))["train_images"] if cards else None, "budgets": out}


def run_budgets(cfg: dict, chosen: list[dict], run_dir: str | Path) -> tuple[list[Budget], dict]:
    """The budgets of a run (``baselines.budgets``, else one per chosen pick: its MAdds budget,
    ``search.max_params`` and its latency budget) and the picks by budget label."""
    if cfg["baselines"]["budgets"]:
        budgets = [parse_budget(b) for b in cfg["baselines"]["budgets"]]
    else:
        budgets = [Budget(c["budget"], cfg["search"]["max_params"], c.get("latency_budget_ms")) for c in chosen]
    by_label = {Budget(c["budget"], cfg["search"]["max_params"], c.get("latency_budget_ms")).label: c
                for c in chosen}
    picks = {b.label: {"arch": by_label[b.label]["arch"],
                       "retrain_dir": Path(run_dir) / by_label[b.label]["retrain_dir"]}
             for b in budgets if b.label in by_label}
    return budgets, picks


# ------------------------------------------------------------------ on its own
def preset_for(dataset: str) -> str | None:
    """The packaged preset made for a named dataset (the one whose ``data.dataset`` it is; its
    recipe is what stnas retrains with there), else None (user data: the derived space)."""
    from stnas.space.presets import list_presets, read_preset

    found = [p for p in list_presets() if (read_preset(p).get("data") or {}).get("dataset") == dataset]
    return found[0] if found else None


def standalone_budgets(cfg: dict) -> list[Budget]:
    """The budgets of ``stnas baselines`` (``baselines.budgets``).

    Raises:
        ConfigError: none given.
    """
    if not cfg["baselines"]["budgets"]:
        raise ConfigError("give the budgets to compare at: --budget 4M,6M (or baselines.budgets)")
    return [parse_budget(b) for b in cfg["baselines"]["budgets"]]


def run_baselines_dir(cfg: dict, out_dir: str | Path, resume: bool = False, ctx: dist.Context | None = None) -> dict:
    """``stnas baselines``: the tables of ``baselines.budgets`` (no pick) in a run directory of
    their own (config.yaml, baselines/, report.md, report.json, plots/); returns the table.

    Raises:
        ConfigError: no budgets, or a budget that no configured baseline fits (before any training).
    """
    from stnas.pipeline.report import write_baselines_report

    ctx = ctx or dist.Context()
    run = RunDir(out_dir)
    with run.lock(ctx.is_main):
        run.guard(resume)
        rebuilds = check_baseline_runs(run.baselines) if resume else []  # before any work
        for r in rebuilds if ctx.is_main else ():
            r.apply()
        budgets = standalone_budgets(cfg)
        plans = shared_plan(cfg, budgets, ctx)
        check_fit(plans)
        if ctx.is_main and not resume:
            run.save_config(cfg)
        table = run_baselines(cfg, run.baselines, budgets, ctx=ctx, plans=plans)
        if ctx.is_main:
            write_baselines_report(run.path, table)
        dist.barrier(ctx.world_size)
    return table


def baseline_table(data: str, budgets: list[str], out_dir: str | Path, *, families: list[str] | None = None,
                   forms: list[str] | None = None, seeds: int | None = None, overrides: list[str] = (),
                   preset: str | None = None, resume: bool = False) -> dict:
    """The scriptable entry: trains the baselines that fit ``budgets`` on ``data`` with the
    recipe of the data's preset (``preset``; ``overrides``: ``key=value`` strings such as
    ``retrain.epochs=3``) into ``out_dir`` and returns the JSON table (also
    ``out_dir/baselines/baselines.json``). ``resume`` continues a run in ``out_dir``."""
    from stnas.pipeline.config import load_run_config, resolve

    if resume:
        cfg = load_run_config(out_dir)
    else:
        flags = {"data.dataset": data, "baselines.budgets": list(budgets), "baselines.families": families,
                 "baselines.forms": forms, "baselines.seeds": seeds}
        cfg = resolve(preset or preset_for(data), None, flags, list(overrides))
    ctx = dist.setup(cfg["device"])
    try:
        return run_baselines_dir(cfg, out_dir, resume, ctx)
    finally:
        dist.teardown()
