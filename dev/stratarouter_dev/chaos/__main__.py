"""``python -m stratarouter_dev.chaos``: one chaos run; exit code 0 only if every invariant held."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stratarouter_dev.chaos.faults import FaultPlan
from stratarouter_dev.chaos.run import ChaosConfig, discard_logs, run_chaos
from stratarouter_dev.cluster import real_node_wanted


def parse(argv: list[str] | None) -> ChaosConfig:
    defaults, faults = ChaosConfig(), FaultPlan()
    parser = argparse.ArgumentParser(prog="python -m stratarouter_dev.chaos", description=__doc__)
    add = parser.add_argument
    add("--executions", type=int, default=defaults.executions, help="Executions on kwok (default 200)")
    add("--waves", type=int, default=defaults.waves, help="created in this many waves ...")
    add("--wave-gap", type=float, default=defaults.wave_gap, help="... this many seconds apart")
    add("--steps", type=int, default=defaults.steps, help="checkpoints per Execution")
    add("--interval", type=float, default=defaults.interval, help="seconds between a worker's checkpoints")
    add("--crash-share", type=float, default=defaults.crash_share,
        help="share of Executions whose first pod crashes (exit 137), its process writing on")  # fmt: skip
    add("--operator-kills", type=int, default=faults.operator_kills)
    add("--postgres-fast", type=int, default=faults.postgres_fast, help="pg_ctl restart -m fast")
    add(
        "--postgres-immediate",
        type=int,
        default=faults.postgres_immediate,
        help="pg_ctl restart -m immediate",
    )
    add("--apiserver-restarts", type=int, default=faults.apiserver_restarts)
    add("--cuts", type=int, default=faults.cuts, help="times the operator is cut off from PostgreSQL")
    add("--cut-seconds", type=float, default=faults.cut_seconds)
    add("--cut-mode", choices=["blackhole", "reset"], default=faults.cut_mode)
    add("--real-node", type=int, default=3 if real_node_wanted() else 0, metavar="N",
        help="Executions of examples/workload.py in real containers on the real node (default 3; 0 with "
        "STRATA_REAL_NODE=0, which starts no real node)")  # fmt: skip
    add("--real-node-steps", type=int, default=defaults.real_node_steps)
    add("--seed", type=int, default=defaults.seed)
    add("--log-dir", type=Path, default=None, help="keep the journal and the operator's log here")
    args = parser.parse_args(argv)
    plan = FaultPlan(
        operator_kills=args.operator_kills,
        postgres_fast=args.postgres_fast,
        postgres_immediate=args.postgres_immediate,
        apiserver_restarts=args.apiserver_restarts,
        cuts=args.cuts,
        cut_seconds=args.cut_seconds,
        cut_mode=args.cut_mode,
    )
    return ChaosConfig(
        executions=args.executions,
        waves=args.waves,
        wave_gap=args.wave_gap,
        steps=args.steps,
        interval=args.interval,
        crash_share=args.crash_share,
        faults=plan,
        seed=args.seed,
        log_dir=args.log_dir,
        real_node_executions=args.real_node,
        real_node_steps=args.real_node_steps,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    started = time.monotonic()
    result = run_chaos(config)
    print("\n" + result.summary(), flush=True)
    print(f"  wall time: {time.monotonic() - started:.0f}s", flush=True)
    if config.log_dir is None and result.ok:
        discard_logs(result)
        print("  (the passing run's logs were removed; --log-dir DIR keeps them)", flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
