"""Coverage-guided fuzzing campaigns of every decoder (atheris), and their regression corpus.

    python scripts/fuzz.py seed                      # (re)write tests/fuzz/corpus/*/seed-*
    python scripts/fuzz.py run [--runs 1000000] [--harness itch ...] [--out build/fuzz/campaign.json]
    python scripts/fuzz.py one HARNESS [libFuzzer args...]   # one harness in this process

``run`` starts one atheris process per harness (``-runs``, a per-input ``-timeout`` and an
``-rss_limit_mb``), working corpus ``build/fuzz/<harness>/corpus`` seeded from the committed
``tests/fuzz/corpus/<harness>``, artifacts (crash-*, timeout-*, oom-*) in
``build/fuzz/<harness>/``, and writes JSON: per harness executions, coverage (libFuzzer's
``cov`` edges and ``ft`` features of the instrumented Python code), corpus size, crashes,
hangs, out-of-memory inputs and the artifact paths. Numba kernels run with
``NUMBA_BOUNDSCHECK=1`` (their own cache folder), so an out-of-bounds access in compiled code is
an ``IndexError`` the harness reports, not silent memory corruption. Run long campaigns niced:
``nice -n 19 python scripts/fuzz.py run``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
WORK = ROOT / "build" / "fuzz"


def _harness_module():
    sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
    import harnesses  # noqa: E402  (tests/fuzz is not a package)
    return harnesses


def cmd_seed(_args) -> int:
    sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
    from seeds import seeds
    for name, files in seeds().items():
        d = CORPUS / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):
            old.unlink()
        for fname, data in files.items():
            (d / fname).write_bytes(data)
        print(f"{name}: {len(files)} seeds, {sum(map(len, files.values()))} bytes")
    return 0


def _instrument(modules) -> None:
    """atheris-instrument the plain Python functions (and methods) of ``modules``; Numba
    dispatchers and the Python functions they compile are left alone."""
    import inspect

    import atheris
    for mod in modules:
        jitted = {id(getattr(o, "py_func", None)) for o in vars(mod).values()
                  if hasattr(o, "py_func")}
        for obj in list(vars(mod).values()):
            funcs = []
            if inspect.isfunction(obj) and obj.__module__ == mod.__name__:
                funcs = [obj]
            elif inspect.isclass(obj) and obj.__module__ == mod.__name__:
                funcs = [f for f in vars(obj).values() if inspect.isfunction(f)]
            for f in funcs:
                if id(f) not in jitted:
                    atheris.instrument_func(f)


def cmd_one(args) -> int:
    import atheris
    h = _harness_module()
    fn = h.HARNESSES[args.harness]
    _instrument(h.MODULES[args.harness] + (h,))
    atheris.instrument_func(fn)

    def test_one_input(data: bytes):
        fn(data)

    atheris.Setup([sys.argv[0]] + args.libfuzzer, test_one_input)
    atheris.Fuzz()
    return 0


_STAT = re.compile(r"stat::(\w+):\s+(\d+)")
_COV = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)(?: corp: (\d+))?")


def _campaign(name: str, runs: int, timeout: int, rss_mb: int, max_len: int) -> dict:
    wd = WORK / name
    corpus = wd / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for old in wd.glob("*-*"):
        if old.is_file() and old.name.split("-")[0] in ("crash", "timeout", "oom", "leak"):
            old.unlink()
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1",
               NUMBA_CACHE_DIR=str(WORK / "numba-boundscheck"), PYTHONHASHSEED="0")
    cmd = [sys.executable, str(Path(__file__).resolve()), "one", name, f"-runs={runs}",
           f"-timeout={timeout}", f"-rss_limit_mb={rss_mb}", f"-max_len={max_len}",
           "-print_final_stats=1", f"-artifact_prefix={wd}/", str(corpus),
           str(CORPUS / name)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    (wd / "log.txt").write_text(log)
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    cov = _COV.findall(log)
    arts = sorted(p for p in wd.iterdir() if p.is_file() and p.name.split("-")[0]
                  in ("crash", "timeout", "oom", "leak"))
    kinds = [p.name.split("-")[0] for p in arts]
    return {
        "executions": stats.get("number_of_executed_units", int(cov[-1][0]) if cov else 0),
        "coverage_edges": int(cov[-1][1]) if cov else None,
        "coverage_features": int(cov[-1][2]) if cov else None,
        "corpus_units": sum(1 for _ in corpus.iterdir()),
        "new_units_added": stats.get("new_units_added"),
        "crashes": kinds.count("crash"),
        "hangs": kinds.count("timeout"),
        "oom": kinds.count("oom"),
        "artifacts": [str(p.relative_to(ROOT)) for p in arts],
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "execs_per_s": round(stats.get("number_of_executed_units", 0) / wall, 1) if wall else 0,
        "peak_rss_mb": stats.get("peak_rss_mb"),
    }


def cmd_run(args) -> int:
    h = _harness_module()
    names = args.harness or list(h.HARNESSES)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"runs_requested": args.runs, "timeout_s": args.timeout, "rss_limit_mb": args.rss_mb,
              "harnesses": {}}
    if out.exists() and args.merge:
        report["harnesses"] = json.loads(out.read_text()).get("harnesses", {})
    for name in names:
        print(f"{name}: {args.runs} runs ...", flush=True)
        r = _campaign(name, args.runs, args.timeout, args.rss_mb, args.max_len)
        report["harnesses"][name] = r
        print(f"{name}: {r['executions']} executions, cov {r['coverage_edges']}, "
              f"{r['crashes']} crashes, {r['hangs']} hangs, {r['oom']} oom, {r['wall_s']} s",
              flush=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    bad = sum(r["crashes"] + r["hangs"] + r["oom"] for r in report["harnesses"].values())
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("seed", help="write the seed corpus from the vendored captures")
    r = sub.add_parser("run", help="run campaigns, write JSON")
    r.add_argument("--runs", type=int, default=1_000_000)
    r.add_argument("--harness", action="append", help="harness name (repeatable; all by default)")
    r.add_argument("--timeout", type=int, default=10, help="per-input time limit, s")
    r.add_argument("--rss-mb", type=int, default=2048, help="memory limit, MiB")
    r.add_argument("--max-len", type=int, default=8192, help="largest input, bytes")
    r.add_argument("--out", default=str(WORK / "campaign.json"))
    r.add_argument("--merge", action="store_true", help="keep other harnesses' results in --out")
    o = sub.add_parser("one", help="fuzz one harness in this process (libFuzzer args follow)")
    o.add_argument("harness")
    o.add_argument("libfuzzer", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    return {"seed": cmd_seed, "run": cmd_run, "one": cmd_one}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
