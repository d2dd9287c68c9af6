"""Fuzz reenact's readers for as long as asked: mutated MP4, MOV, MKV, WebM, MPEG-TS, PNG, JPEG and batch job files
(CSV, YAML, JSON) through the real reading path, each in a child process with a time and a memory limit.

Reports inputs tried per kind, outcomes (ok, error, and the bugs: messy, traceback, crash, hang, memory), the
distinct error lines said, and the reproducers saved (replay one with ``--replay FILE``). The engine is
``benchmarks/fuzzing.py``; ``tests/test_fuzz.py`` runs a short version.

Usage:
  python benchmarks/fuzz.py --seconds 3600 --seed 1 --out fuzz-report.json
  python benchmarks/fuzz.py --inputs 20000 --kinds mp4,mkv,json --reproducers out/fuzz-found/
  python benchmarks/fuzz.py --replay out/fuzz-found/mov-traceback-1-32.mov
Exit status 1 when a bug was found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import BAD, KINDS, OUTCOMES, REPO, Stats, fuzz, replay  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="run this long (default 60 unless --inputs)")
    parser.add_argument("--inputs", type=int, help="run this many inputs")
    parser.add_argument("--seed", type=int, default=0, help="fixes the inputs made (default 0)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated (default all: {','.join(KINDS)})")
    parser.add_argument("--reproducers", type=Path, default=REPO / "out" / "fuzz-found",
                        help="where bad inputs are saved (default out/fuzz-found, ignored by git)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per input before it is a hang")
    parser.add_argument("--out", type=Path, help="write the report as JSON here too")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="run one saved reproducer through reenact")
    args = parser.parse_args()
    os.environ.setdefault("REENACT_DATA", str(REPO.parent / "shared" / "data"))
    data = Path(os.environ["REENACT_DATA"])
    if args.replay:
        done = replay(args.replay)
        print(done.stderr, end="")
        return done.returncode
    seconds = args.seconds if args.seconds or args.inputs else 60.0
    last = [0.0]

    def progress(stats: Stats) -> None:
        if time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            bad = sum(stats.count(o) for o in BAD)
            print(f"{stats.total} inputs, {stats.total / max(stats.seconds, 1e-9):.1f}/s, {bad} bad", file=sys.stderr)

    stats = fuzz(args.kinds.split(","), args.seed, args.inputs, seconds, args.reproducers,
                 data if data.is_dir() else None, args.timeout, progress=progress)
    report = stats.to_dict()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{stats.total} inputs in {stats.seconds:.0f} s ({report['inputs_per_second']}/s), seed {args.seed}")
    print(f"{'kind':6} {'tried':>7} " + " ".join(f"{o:>9}" for o in OUTCOMES))
    for kind, row in report["per_kind"].items():
        print(f"{kind:6} {row['tried']:7d} " + " ".join(f"{row.get(o, 0):9d}" for o in OUTCOMES))
    for bad in report["bad"]:
        print(f"BAD {bad['kind']} {bad['outcome']} {bad['mutations']}: {' | '.join(bad['said'])[:300]}")
    if stats.reproducers:
        print(f"reproducers: {len(stats.reproducers)} in {args.reproducers}")
    return 1 if any(stats.count(o) for o in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
