"""The ``kubectl-strata`` command line: kubectl's global options, the subcommands, the exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stratarouter_runtime.plugin import exits, fork, logs, reads, ui, writes
from stratarouter_runtime.plugin.exits import PluginError
from stratarouter_runtime.plugin.kubectl import Ctx, Kubectl
from stratarouter_runtime.plugin.output import FORMATS

EPILOG = """exit codes: 0 done, 1 other failure, 2 bad command line, 3 not found, 4 forbidden (the message
names the permission), 5 view API or store unavailable, 6 kubectl not on PATH"""


def _step(value: str) -> int:
    try:
        step = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a step (an integer >= 0): {value!r}") from None
    if step < 0:
        raise argparse.ArgumentTypeError(f"not a step (an integer >= 0): {value!r}")
    return step


def _attempt(value: str) -> int:
    step = _step(value)
    if step < 1:
        raise argparse.ArgumentTypeError(f"attempts start at 1: {value!r}")
    return step


def _globals(top_level: bool) -> argparse.ArgumentParser:
    """kubectl's options, accepted before and after the command; after it, an option only overrides
    when given (SUPPRESS: a subcommand's absent option must not reset one given before it)."""
    common = argparse.ArgumentParser(add_help=False)
    default = None if top_level else argparse.SUPPRESS
    common.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's)")
    common.add_argument("--context", default=default, help="kubeconfig context to use")
    common.add_argument("--kubeconfig", default=default, help="kubeconfig file to use")
    common.add_argument("-o", "--output", choices=FORMATS, default=default, help="output (default: table)")
    return common


def parser() -> argparse.ArgumentParser:
    common = _globals(top_level=False)
    top = argparse.ArgumentParser(
        prog="kubectl strata",
        description="Read and steer StrataRouter Executions with your own Kubernetes identity.",
        epilog=EPILOG,
        parents=[_globals(top_level=True)],
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common], epilog=EPILOG)

    p = cmd("status", "live step and attempt of an Execution, from the store")
    p.add_argument("name")
    p = cmd("history", "checkpoints, attempts and the failures between them, with their causes")
    p.add_argument("name")
    p = cmd("show", "one checkpoint's state as JSON (default: the latest)")
    p.add_argument("name")
    p.add_argument("--step", type=_step)
    p = cmd("diff", "JSON Patch from one checkpoint's state to another's")
    p.add_argument("name")
    p.add_argument("step_a", type=_step, metavar="STEP_A")
    p.add_argument("step_b", type=_step, metavar="STEP_B")
    p = cmd("snapshot", "create a Snapshot of an Execution's checkpoint")
    p.add_argument("name")
    p.add_argument("--step", type=_step, help="checkpoint step (default: the latest)")
    p.add_argument("--name", dest="snapshot", help="the Snapshot's name (default: NAME-s<step>-<time>)")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS", help="wait until it is Ready")
    p = cmd("restore", "restore a Snapshot into its Execution (sets spec.restoreFrom)")
    p.add_argument("name")
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p = cmd("fork", "create a new Execution that starts from another's checkpoint (sets spec.startFrom)")
    p.add_argument("name")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.add_argument("--step", type=_step, help="checkpoint step (default: the newest when it starts)")
    p.add_argument("--snapshot", help="start from this Snapshot instead")
    p.add_argument("--image", help="the image of the new run's first container (default: the source's)")
    p = cmd("suspend", "suspend an Execution (its pod is deleted, its state kept)")
    p.add_argument("name")
    p = cmd("resume", "resume a suspended Execution")
    p.add_argument("name")
    p = cmd("logs", "container logs of one attempt's pod (default: the current attempt)")
    p.add_argument("name")
    p.add_argument("--attempt", type=_attempt)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int)
    p.add_argument("-c", "--container")
    p.add_argument("-p", "--previous", action="store_true", help="the previous container of that pod")
    p = cmd("ui", "run kubectl proxy and print the web timeline's URL")
    p.add_argument("--open", action="store_true", help="open it in a browser")
    return top


def run(args: argparse.Namespace) -> int:
    kubectl = Kubectl(context=args.context, kubeconfig=args.kubeconfig)
    if args.command == "ui":
        return ui.ui(Ctx(kubectl, args.namespace or "default"), open_browser=args.open)
    ctx = Ctx(kubectl, kubectl.namespace(args.namespace), args.output or "table")
    match args.command:
        case "status":
            reads.status(ctx, args.name)
        case "history":
            reads.history(ctx, args.name)
        case "show":
            reads.show(ctx, args.name, args.step)
        case "diff":
            reads.diff(ctx, args.name, args.step_a, args.step_b)
        case "snapshot":
            writes.snapshot(ctx, args.name, args.step, args.snapshot, args.wait)
        case "restore":
            writes.restore(ctx, args.name, args.snapshot)
        case "fork":
            fork.fork(ctx, args.name, args.new_name, args.step, args.snapshot, args.image)
        case "suspend" | "resume":
            writes.suspend(ctx, args.name, args.command == "suspend")
        case "logs":
            return logs.logs(ctx, args.name, args.attempt, follow=args.follow, tail=args.tail,
                             container=args.container, previous=args.previous)  # fmt: skip
    return exits.OK


def main(argv: Sequence[str] | None = None) -> int:
    """``kubectl-strata ARGV``; returns the exit code (docs/plugin.md)."""
    args = parser().parse_args(argv)  # exits 2 on a bad command line
    try:
        return run(args)
    except PluginError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
