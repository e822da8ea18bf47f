"""The bounded chaos run of ``make test``: 20 Executions on kwok through the real checkpoint API while
every kind of fault of ``make chaos`` happens at least once; every invariant must hold.

It starts a cluster and a PostgreSQL of its own (it restarts kube-apiserver and PostgreSQL, which the
session's shared ones must not see) and takes about two minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stratarouter_dev.chaos.faults import KINDS, FaultPlan
from stratarouter_dev.chaos.run import ChaosConfig, run_chaos
from stratarouter_dev.tcpproxy import TcpProxy

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.timeout(420)]

BOUNDED = ChaosConfig(
    executions=20,
    waves=2,
    wave_gap=20.0,
    steps=40,
    interval=1.0,
    crash_share=0.25,
    faults=FaultPlan(
        operator_kills=3,
        postgres_fast=1,
        postgres_immediate=1,
        apiserver_restarts=1,
        cuts=1,
        cut_seconds=10.0,
        start=10.0,
        end=45.0,
    ),
    seed=7,  # spreads the faults over the time both waves run (the schedule is a pure function of it)
)


def test_bounded_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    result = run_chaos(dataclasses.replace(BOUNDED, log_dir=tmp_path))
    print(result.summary())
    assert result.violations == [], result.summary()
    assert result.succeeded == BOUNDED.executions
    injected = result.fault_counts()
    assert {kind: injected[kind] for kind in KINDS} == {
        "operator SIGKILL": 3,
        "PostgreSQL restart -m fast": 1,
        "PostgreSQL restart -m immediate": 1,
        "kube-apiserver restart": 1,
        "operator cut off from PostgreSQL": 1,
    }
    assert result.crashes == 5
    assert result.acks >= BOUNDED.executions * BOUNDED.steps  # each step acknowledged at least once
    # the fence was put to the test: zombies wrote on, and were refused once their attempt was replaced
    assert sum(n for reason, n in result.refusals.items() if reason.startswith(("409", "401", "403"))) >= 1


def test_a_token_review_while_the_api_server_is_down_is_answered_503(tmp_path: Path) -> None:
    """What the bounded and full runs saw during kube-apiserver restarts (``GET /v1/state: 500``: a
    connection error escaped the TokenReview), made deterministic: a pod's first request while the API
    server is away must be retryable (503)."""
    from stratarouter_dev.chaos.run import GROUP_PATH, execution_body
    from stratarouter_dev.demo import NAMESPACE, Demo
    from stratarouter_dev.operator_process import OperatorProcess, operator_environment
    from stratarouter_dev.pods import is_running, request_pod_token, wait_for_pod

    demo = Demo()
    operator: OperatorProcess | None = None
    answers: list[int] = []
    try:
        demo.start_infrastructure(real_node=False)
        demo.apply_crds()
        env = operator_environment(demo.cluster.kubeconfig, demo.postgres.dsn)
        operator = OperatorProcess(env, NAMESPACE, tmp_path / "op.log")
        operator.start()
        demo.api.request("POST", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions", execution_body("probe"))
        pod = wait_for_pod(demo.api, NAMESPACE, "probe-a1", is_running, timeout=60, what="Running")
        assert pod is not None
        token = request_pod_token(demo.api, pod)  # never shown to the checkpoint API before the outage
        url = f"{operator.api_url}/v1/state"

        def first_request() -> None:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    answers.append(resp.status)
            except urllib.error.HTTPError as exc:
                answers.append(exc.code)

        demo.cluster.restart("kube-apiserver", while_down=first_request)
    finally:
        if operator is not None:
            operator.stop()
        demo.close()
    assert answers == [503]


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """A loopback server that echoes whatever each connection sends."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def echo(conn: socket.socket = conn) -> None:
                with conn, contextlib.suppress(OSError):  # the proxy may reset it
                    while data := conn.recv(65536):
                        conn.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def _closed(conn: socket.socket) -> bool:
    """The peer closed or reset the connection (a reset shows as ConnectionResetError)."""
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


def _refused(port: int) -> bool:
    """A new connection is closed or reset at once (during the handshake or on the first read)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            return _closed(conn)
    except ConnectionResetError:
        return True


def test_the_proxy_forwards_holds_traffic_in_a_blackhole_and_resets_on_a_reset_cut() -> None:
    """The cut the chaos run relies on really cuts: what a client sees in each mode."""
    server, _ = _echo_server()
    proxy = TcpProxy("127.0.0.1", server.getsockname()[1]).start()
    try:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"

        proxy.cut("blackhole")  # held: nothing arrives, nothing is closed
        client.sendall(b"held")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(4)
        proxy.restore()  # then delivered, on the same connection
        client.settimeout(5)
        assert client.recv(4) == b"held"

        proxy.cut("reset")  # the open connection is reset, a new one is closed at once
        assert _closed(client)
        assert _refused(proxy.port)
        proxy.restore()
        fresh = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        fresh.sendall(b"back")
        assert fresh.recv(4) == b"back"
        assert proxy.stats.reset == 1
        assert proxy.stats.refused == 1
        for conn in (client, fresh):
            conn.close()
    finally:
        proxy.stop()
        server.close()
