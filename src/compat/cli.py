"""Command line: ``python -m compat run EXPERIMENT --profile cpu --set key=value``, ``data prepare``,
``bench evaluate``, ``bench gallery``, ``bench train``, ``bench profile``, ``bench levers``, ``bench upgrade``,
``bench backfill``, ``book execute``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import backfill, distributed
from .artefacts import help_train
from .bench import EVALUATE_SIZES, bench_evaluate, bench_gallery, bench_levers, bench_step_profile, bench_train
from .booktools import execute, set_repository
from .budget import AIM_HOURS, artefact_table, book_jobs, budget_table, measured_speeds
from .config import get_profile, value_at
from .config_text import read_parameter
from .data import prepare
from .errors import STORAGE_REMEDIES, CompatError, check_range, storage_error
from .experiments import EXPERIMENTS, bict, fct, get_experiment
from .paths import check_own_checkout
from .store import Store


def _data_prepare(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    folder = prepare(mirror=args.mirror)
    manifest = json.loads((folder / "manifest.json").read_text())
    print(
        f"Tiny-ImageNet-200 ready in {folder} ({manifest['counts']}; prepared in {manifest['prepare_seconds']} s, "
        f"this call {time.perf_counter() - start:.1f} s)"
    )


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CompatError(f"--set wants key=value, got {item!r}")
        out[key] = value
    return out


def _run(args: argparse.Namespace) -> None:
    """One entry point for one process or several (``torchrun --nproc_per_node N -m compat run ...``): rank 0
    runs the experiment and the others help it train (see :mod:`compat.distributed`)."""
    experiment = get_experiment(args.experiment)  # unknown names fail before any data is loaded
    profile = get_profile(args.profile, _parse_sets(args.set))
    if distributed.init_from_env() and not distributed.is_writer():
        store = Store()
        distributed.serve(lambda spec: help_train(spec, store))
        distributed.finish()
        return
    results = experiment.run(profile)
    distributed.finish()  # on an error rank 0 exits instead, and torchrun stops the others
    for distance in profile.protocol.distances:  # the stored numbers only: the chapter computes the intervals
        print(f"\n{args.experiment}, profile {profile.name}, distance {distance} (mean over seeds; intervals in the chapter):")
        print(experiment.point_table(results, distance).to_string())


def _plan(args: argparse.Namespace) -> None:
    """What the book (or the named chapters) needs for a profile, what the store holds, and the training minutes
    of the rest at the committed runs' measured speeds (see :mod:`compat.budget`)."""
    for name in args.experiments:
        get_experiment(name)  # an unknown name fails before any data is loaded
    profile = get_profile(args.profile, _parse_sets(args.set))
    store = Store()
    jobs = book_jobs(profile, args.experiments)
    artefacts = artefact_table(profile, store, jobs)
    images_per_s, transformation_s = measured_speeds(profile.name, store)
    stored = sum(store.read_result(j.experiment, profile.name, j.key) is not None for j in jobs)
    print(
        f"profile {profile.name}: {len(jobs)} result files ({stored} stored); speeds measured by its committed runs: "
        + (f"{images_per_s:.0f} img/s per image model" if images_per_s else "none for image models")
        + (f", {transformation_s:.0f} s per transformation" if transformation_s else ", none for transformations")
    )
    if args.models:
        print(artefacts.to_string())
    table = budget_table(artefacts, images_per_s, transformation_s)
    print(table.to_string(float_format=lambda v: f"{v:.0f}"))
    whole, todo = table.loc["book", ["training minutes, whole chapter", "training minutes to do"]] / 60
    print(
        f"training, estimated: {whole:.1f} h for the whole book (the aim: {AIM_HOURS:g} h with embedding and evaluation, "
        f"which are not counted here), {todo:.1f} h of it still to do"
    )


def _bench_train(args: argparse.Namespace) -> None:
    check_range("--steps", args.steps, 1, 100_000)
    check_range("--workers", args.workers, 0, 64)
    bench_train(args.profile, steps=args.steps, workers=args.workers, out=args.out)


def _bench_levers(args: argparse.Namespace) -> None:
    check_range("--steps", args.steps, 2, 100_000)
    check_range("--workers", args.workers, 0, 64)
    bench_levers(args.profile, steps=args.steps, workers=args.workers, out=args.out)


def _bench_profile(args: argparse.Namespace) -> None:
    check_range("--steps", args.steps, 1, 100_000)
    check_range("--top", args.top, 1, 1000)
    bench_step_profile(args.profile, steps=args.steps, top=args.top, out=args.out)


def _bench_upgrade(args: argparse.Namespace) -> None:
    profile = get_profile(args.profile, _parse_sets(args.set))
    measure = {"fct": fct.upgrade_cost, "bict": bict.upgrade_cost}[args.experiment]
    print(f"{args.experiment} upgrade cost, profile {profile.name} (stored as a result file; measured once per configuration):")
    for row in measure(profile)["rows"]:
        print(
            f"{row['method']:9s} N={row['n']:>8,d}: {row['seconds']:8.3f} s  {row['rows_per_s']:10,.0f} rows/s  "
            f"inputs {row['input_mb']:7.1f} MB  peak extra {row['peak_extra_mb'] or 0:7.1f} MB"
        )


def _bench_backfill(args: argparse.Namespace) -> None:
    profile = get_profile(args.profile, _parse_sets(args.set))
    payload = backfill.measure(profile)
    print(f"partial backfill, profile {profile.name} (stored as a result file; measured once per configuration):")
    for row in payload["rows"]:
        print(
            f"{row['strategy']:22s} {row['distance']:6s} {row['order']:19s} {100 * row['fraction']:3.0f} % re-embedded: "
            f"top-1 {row['top1']:5.1f} [{row['top1 low']:5.1f}, {row['top1 high']:5.1f}]"
        )


def _bench_evaluate(args: argparse.Namespace) -> None:
    check_range("--repeats", args.repeats, 1, 1000)
    check_range("--n", args.n, *EVALUATE_SIZES)
    check_range("--dim", args.dim, 1, 65_536)
    bench_evaluate(n=args.n, dim=args.dim, repeats=args.repeats, out=args.out)


def _bench_gallery(args: argparse.Namespace) -> None:
    for n in args.sizes:
        check_range("--sizes item", n, 1, 100_000_000)
    check_range("--queries", args.queries, 1, 1_000_000)
    check_range("--k", args.k, 1, 10_000)
    bench_gallery(sizes=tuple(args.sizes), queries=args.queries, k=args.k, out=args.out)


def _book_execute(args: argparse.Namespace) -> None:
    overrides = _parse_sets(args.set)
    profile = get_profile(args.profile, overrides)  # fail before starting a kernel
    # the values as the config read them (10 for "10", [0, 1] for "0,1"): the page shows what ran, and they give the same keys
    params = {"profile": args.profile, "overrides": {key: value_at(profile, key) for key in overrides}}
    for item in args.param:
        key, _, value = item.partition("=")
        params[key] = read_parameter(value)  # as papermill's own -p: booleans, numbers, else text
    out = execute(args.notebook, args.output or Path("book") / args.notebook.name, params, prepare_only=args.prepare_only)
    print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compat", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("run", help="run an experiment (trains what is missing, writes result files)")
    p.add_argument("experiment", help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--profile", default="cpu", help="smoke | cpu | gpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. protocol.seeds=0,1")
    p.set_defaults(func=_run)

    p = verbs.add_parser("plan", help="the models and training minutes a profile's book still needs (nothing runs)")
    p.add_argument("experiments", nargs="*", help="chapters to count (default: all): " + ", ".join(EXPERIMENTS))
    p.add_argument("--profile", default="cpu", help="smoke | cpu | gpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--models", action="store_true", help="also list every model and transformation")
    p.set_defaults(func=_plan)

    data = verbs.add_parser("data", help="dataset preparation").add_subparsers(dest="action", required=True)
    p = data.add_parser("prepare", help="verify the Tiny-ImageNet source and build the uint8 cache")
    p.add_argument("--mirror", help="folder with the zip shards and SHA256SUMS (default: ../shared/data/tiny-imagenet-200)")
    p.set_defaults(func=_data_prepare)

    bench = verbs.add_parser("bench", help="benchmarks that print figures").add_subparsers(dest="action", required=True)
    p = bench.add_parser("evaluate", help="the retrieval evaluator against raw faiss")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    p.set_defaults(func=_bench_evaluate)
    p = bench.add_parser("gallery", help="search and upgrade cost against gallery size (synthetic clustered vectors)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    p.set_defaults(func=_bench_gallery)
    for name, func, what in (
        ("train", _bench_train, "training images/s: this engine against a conventional pipeline"),
        ("levers", _bench_levers, "training images/s with torch.compile and other batch sizes, beside the conventional pipeline"),
    ):
        p = bench.add_parser(name, help=what)
        p.add_argument("--profile", default="cpu")
        p.add_argument("--steps", type=int, default=40)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--out", type=Path, help="also write the figures to this JSON file")
        p.set_defaults(func=func)
    p = bench.add_parser("profile", help="torch.profiler's table of a training step: the top operators and their share")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    p.set_defaults(func=_bench_profile)
    p = bench.add_parser("upgrade", help="upgrading N stored gallery rows with h against re-embedding N images")
    p.add_argument("experiment", nargs="?", default="fct", choices=("fct", "bict"), help="whose transformation h (default fct)")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=_bench_upgrade)
    p = bench.add_parser("backfill", help="top-1 against the share of the stored gallery re-embedded (BCT, FCT, BiCT)")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=_bench_backfill)

    book = verbs.add_parser("book", help="notebooks into the book").add_subparsers(dest="action", required=True)
    p = book.add_parser("execute", help="run a source notebook with papermill into book/")
    p.add_argument("notebook", type=Path)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--output", type=Path)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (as `run --set`); reaches the notebook as its `overrides` parameter",
    )
    p.add_argument("-p", "--param", action="append", default=[], help="extra papermill parameter key=value")
    p.add_argument("--prepare-only", action="store_true", help="inject parameters without executing (for nbval)")
    p.set_defaults(func=_book_execute)
    p = book.add_parser("repository", help="turn on the book's repository buttons, pointing at URL (the publishing workflow)")
    p.add_argument("url")
    p.add_argument("--config", type=Path, default=Path("_config.yml"))
    p.set_defaults(func=lambda args: set_repository(args.config, args.url))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_own_checkout()
        args.func(args)
    except CompatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk or a file-size limit met by a writer outside the store (papermill's)
        if exc.errno not in STORAGE_REMEDIES:
            raise
        print(f"error: {storage_error(exc.filename or 'a file', exc, 'what was written before is kept')}", file=sys.stderr)
        return 2
    return 0
