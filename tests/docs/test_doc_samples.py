"""Every Python sample of README.md and docs/sdk.md runs as written (see ``tests/docs/samples.py``).

Each sample is executed as a script (``__name__ == "__main__"``) in a thread of its own, so its
``asyncio.run`` gets a fresh event loop, with every ``STRATA_*`` variable cleared first. On the
PostgreSQL leg ``STRATA_DB_URL`` names an empty database of its own, as ``eval "$(make -s db-up)"``
would export it. A sample marked ``<!-- not-run: why -->`` is only counted.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest

from tests.docs.samples import DOCUMENTS, ROOT, Sample, all_samples

SAMPLES = all_samples()
SAMPLE_TIMEOUT = 60.0

CASES = [
    pytest.param(
        sample, leg, id=f"{sample.id}-{leg}", marks=[pytest.mark.postgres] if leg == "postgresql" else []
    )
    for sample in SAMPLES
    if sample.not_run is None
    for leg in sample.backends
]


def run_as_script(sample: Sample) -> None:
    """Execute the sample as ``python sample.py`` would (line numbers are the document's)."""
    source = "\n" * sample.line + sample.code
    code = compile(source, str(ROOT / sample.document), "exec")
    failure: list[BaseException] = []

    def target() -> None:
        try:
            exec(code, {"__name__": "__main__", "__file__": str(ROOT / sample.document)})
        except SystemExit as exc:
            if exc.code not in (None, 0):
                failure.append(exc)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"sample {sample.id}", daemon=True)
    thread.start()
    thread.join(SAMPLE_TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"{sample.id} still running after {SAMPLE_TIMEOUT:g} s")
    if failure:
        raise failure[0]


@pytest.fixture
def sample_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("STRATA_"):
            monkeypatch.delenv(key)
    if request.node.callspec.params["leg"] == "postgresql":
        monkeypatch.setenv("STRATA_DB_URL", request.getfixturevalue("pg_dsn"))


@pytest.mark.parametrize(("sample", "leg"), CASES)
@pytest.mark.usefixtures("sample_env")
def test_sample_runs(sample: Sample, leg: str) -> None:
    run_as_script(sample)


def test_every_sample_is_run_or_marked() -> None:
    """Counts what runs and what is marked; a marker must say why, and the documents must have samples
    (an extraction that finds nothing would make every other test here pass vacuously)."""
    counts: Counter[tuple[str, str]] = Counter()
    for sample in SAMPLES:
        if sample.not_run is None:
            counts[sample.document, "run"] += 1
        else:
            assert sample.not_run, f"{sample.id}: a not-run marker must say why"
            counts[sample.document, "not run"] += 1
    summary = ", ".join(
        f"{doc}: {counts[doc, 'run']} run, {counts[doc, 'not run']} marked not-run" for doc in DOCUMENTS
    )
    print(summary)
    assert counts["docs/sdk.md", "run"] >= 15, summary
    assert counts["README.md", "run"] >= 1, summary
    legs = Counter(leg for sample in SAMPLES if sample.not_run is None for leg in sample.backends)
    assert legs["memory"], legs
    assert legs["postgresql"], legs


def test_readme_sdk_sample_is_run() -> None:
    """The README's own SDK sample (the first under "## The SDK") is a whole program that is run."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## The SDK")
    first = next(s for s in SAMPLES if s.document == "README.md" and s.line > text[:start].count("\n"))
    assert first.not_run is None, first.id
    assert "asyncio.run(" in first.code, first.id
