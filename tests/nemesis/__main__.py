"""``python -m tests.nemesis``: long fault runs, a markdown table of results.

    python -m tests.nemesis --seed 7 --duration 60 --workload set --mode causal --nemesis all
    python -m tests.nemesis --seed 7 --duration 40 --replicas 5 --keys 16 --membership

Each of --workload, --mode and --nemesis may be given several times; every combination
runs once with the same seed. Without --seed the seed comes from REDQUORUM_NEMESIS_SEED,
else a fresh one is drawn (and printed, so the run replays).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

from .nemesis import GROUPS, KINDS, parse_kinds
from .runner import Result, RunSpec, run, seed_from_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nemesis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults per run")
    parser.add_argument("--workload", action="append", choices=("set", "register"))
    parser.add_argument("--mode", action="append", choices=("causal", "lww"))
    parser.add_argument("--nemesis", action="append",
                        help=f"comma-separated kinds ({', '.join(KINDS)}) or a group "
                             f"({', '.join(GROUPS)}); default all")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("-n", type=int, default=3)
    parser.add_argument("-w", type=int, default=2)
    parser.add_argument("-r", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--value-bytes", type=int, default=0,
                        help="pad every register value to about this size (fills socket buffers)")
    parser.add_argument("--tombstone-grace", type=float, default=None,
                        help="the proxies' tombstone grace in seconds (longer than any fault)")
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default="everysec")
    parser.add_argument("--sloppy-quorum", choices=("yes", "no"), default="yes",
                        help="the proxies' --sloppy-quorum (no: writes need their homes)")
    parser.add_argument("--membership", action="store_true",
                        help="during the run a replica joins (redquorum join), later an "
                             "original one leaves (redquorum leave); faults spare the leaver")
    parser.add_argument("--out", type=Path, help="write the markdown table here too")
    args = parser.parse_args(argv)
    for text in args.nemesis or []:
        try:
            parse_kinds(text)
        except ValueError as exc:
            parser.error(str(exc))
    seed = args.seed if args.seed is not None else seed_from_environment()
    results: list[Result] = []
    combos = itertools.product(args.workload or ["set"], args.mode or ["causal"],
                               args.nemesis or ["all"])
    for workload, mode, nemesis in combos:
        spec = RunSpec(workload=workload, mode=mode, nemesis=nemesis, seed=seed,
                       duration=args.duration, replicas=args.replicas, n=args.n, w=args.w,
                       r=args.r, clients=args.clients, keys=args.keys,
                       appendfsync=args.appendfsync,
                       value_bytes=args.value_bytes,
                       tombstone_grace=args.tombstone_grace, passive_wait=10.0, converge_bound=60.0,
                       sloppy_quorum=args.sloppy_quorum == "yes", membership=args.membership)
        work = Path(tempfile.mkdtemp(prefix="redquorum-nemesis-"))
        result = run(spec, work)
        results.append(result)
        if result.clean():
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept for inspection (history.jsonl, proxy and replica logs): {work}")
    table = "\n".join([Result.HEADER] + [r.row() for r in results])
    print()
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
