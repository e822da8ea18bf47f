"""``kubectl strata``'s parts without a cluster: the entry point, options, exit codes, output."""

from __future__ import annotations

import io
import tomllib
from importlib import import_module

import pytest

from stratarouter_runtime.plugin import exits, kubectl, main, output, writes
from tests.operator.conftest import ROOT


def test_the_script_entry_point_resolves() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["kubectl-strata"].partition(":")
    assert getattr(import_module(module), name) is main.entry


def test_global_options_before_or_after_the_command() -> None:
    p = main.parser()
    assert p.parse_args(["-n", "a", "status", "x"]).namespace == "a"
    assert p.parse_args(["status", "x", "-n", "b"]).namespace == "b"
    assert p.parse_args(["-n", "a", "status", "x", "-n", "b"]).namespace == "b"
    args = p.parse_args(["--context", "c", "diff", "x", "1", "2", "-o", "yaml"])
    assert (args.context, args.output, args.step_a, args.step_b) == ("c", "yaml", 1, 2)
    assert p.parse_args(["status", "x"]).namespace is None


BAD = [["status"], ["diff", "x", "1"], ["show", "x", "--step", "-1"], ["logs", "x", "--attempt", "0"],
       ["status", "x", "-o", "wide"], []]  # fmt: skip


@pytest.mark.parametrize("argv", BAD)
def test_bad_command_lines_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main.main(argv)
    assert done.value.code == exits.USAGE


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        (
            'Error from server (Forbidden): executions.stratarouter.io "x" is forbidden: User ...',
            exits.FORBIDDEN,
        ),
        ('error: error from server (NotFound): pods "x-a9" not found', exits.NOT_FOUND),
        (
            "Error from server (ServiceUnavailable): the server is currently unable to handle the request",
            exits.UNAVAILABLE,
        ),
        ("error: You must be logged in to the server (Unauthorized)", exits.FORBIDDEN),
        ("Error from server (Conflict): ...", exits.FAILED),
        ("error: something else", exits.FAILED),
    ],
)
def test_exit_codes_from_kubectls_messages(stderr: str, code: int) -> None:
    assert kubectl.exit_code_of(stderr) == code


def test_tables_and_sizes() -> None:
    out = io.StringIO()
    output.table(["name", "step"], [["a-long-name", 1], ["b", None]], out)
    assert out.getvalue().splitlines() == ["NAME          STEP", "a-long-name   1", "b             <none>"]
    sizes = [output.size(n) for n in (0, 1023, 1536, 20 * 1024, 3 * 1024**3)]
    assert sizes == ["0B", "1023B", "1.5KiB", "20KiB", "3.0GiB"]
    # an Event's whole second sorts after what happened within it
    assert output.sort_key("2026-12-01T10:00:01Z") > output.sort_key("2026-12-01T10:00:01.5+00:00")
    assert output.sort_key("2026-12-01T11:00:00+01:00") == output.sort_key("2026-12-01T10:00:00.999999Z")


def test_snapshot_names_are_valid_object_names() -> None:
    assert writes.snapshot_name("train", 3, now=0) == "train-s3-19700101000000"
    assert writes.snapshot_name("train", None, now=0) == "train-slatest-19700101000000"
    assert len(writes.snapshot_name("x" * 253, 12345)) == 253


def test_no_kubectl_is_exit_6(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main.main(["status", "x", "-n", "ns"]) == exits.NO_KUBECTL
    assert "'kubectl' is not on PATH" in capsys.readouterr().err
