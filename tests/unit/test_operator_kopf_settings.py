"""kopf settings derived from ours: pure, no cluster."""

import kopf
import pytest

from stratarouter_runtime.operator.main import configure_kopf
from stratarouter_runtime.operator.settings import OperatorSettings


@pytest.mark.parametrize(("namespaces", "scanning_disabled"), [((), False), (("team-a", "team-b"), True)])
def test_named_namespaces_disable_cluster_scanning(
    namespaces: tuple[str, ...], scanning_disabled: bool
) -> None:
    """With named namespaces kopf must not list all namespaces: the namespaced chart grants no such right."""
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorSettings(db_url="postgresql://unused", watch_namespaces=namespaces))
    assert settings.scanning.disabled is scanning_disabled


def test_peering_records_expire_soon_after_a_replica_dies() -> None:
    """A replica killed without leaving (SIGKILL, node lost) must not stall the handlers for kopf's 60 s."""
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorSettings(db_url="postgresql://unused", peering="strata"))
    assert settings.peering.lifetime == 20
    ours = OperatorSettings(db_url="postgresql://unused", peering="strata", peering_lifetime_seconds=30)
    configure_kopf(settings, ours)
    assert settings.peering.lifetime == 30


def test_deletion_rechecks_exiting_timers_quickly() -> None:
    """A TTL timer still running when its Execution is deleted must not hold the finalizer for a minute."""
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorSettings(db_url="postgresql://unused"))
    assert settings.background.cancellation_polling <= 2
