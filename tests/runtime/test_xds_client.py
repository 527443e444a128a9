"""The client's `xds:///` channel against a real xDS management server (go-control-plane) and real orchestrators.

GRPC_XDS_BOOTSTRAP names the management server, as the chart's `xds` switch sets it; the client is the
project's OrchestratorClient, whose target `orchestrator:9090` becomes `xds:///...` for that reason alone.
Everything the client does here (which orchestrator it calls, how it splits, retries and ejects) changes
only because the management server served a new snapshot: no test restarts or reconfigures the client.
"""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.client._channel import resolve_target
from ai_agents.orchestrator.app import Orchestrator
from waits import assert_eventually_async

from ._fleet_support import OrchestratorFactory
from ._grpc_fault_proxy import FaultProxy
from ._split_bounds import binomial_range
from ._xds_control_plane import ROUTE, ControlPlane, ControlPlaneUnavailable, build_control_plane
from ._xds_resources import Locality, orchestrator_resources

# The first test may compile the control plane on a cold Go cache (`make setup` warms it).
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="session")
def control_plane_binary() -> Path:
    try:
        return build_control_plane()
    except ControlPlaneUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def control_plane(control_plane_binary: Path, tmp_path: Path) -> Iterator[ControlPlane]:
    server = ControlPlane(control_plane_binary, tmp_path / "xds-control-plane.log")
    yield server
    server.stop()


@pytest.fixture
def listener(control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The orchestrator's name as the client is configured with it; the bootstrap file is in the environment.

    A fresh name per test: gRPC keeps one xDS client per target, and a test must not meet the previous one's.
    """
    bootstrap = tmp_path / "xds-bootstrap.json"
    bootstrap.write_text(json.dumps(control_plane.bootstrap()))
    monkeypatch.setenv("GRPC_XDS_BOOTSTRAP", str(bootstrap))
    return f"orchestrator-{uuid.uuid4().hex[:8]}.test.svc:9090"


@pytest.fixture
async def orchestrators(start_orchestrator: OrchestratorFactory) -> dict[str, Orchestrator]:
    """Three real orchestrators on one database, named so each answer says which one served it."""
    names = ("orch-a", "orch-b", "orch-c")
    started = await asyncio.gather(*(start_orchestrator(orchestrator_id=name) for name in names))
    return dict(zip(names, started, strict=True))


@pytest.fixture
async def xds_client(listener: str, control_plane: ControlPlane) -> AsyncIterator[OrchestratorClient]:
    # A plain host:port, as a CLI user gives it: GRPC_XDS_BOOTSTRAP alone makes it xds:/// (the chart writes the
    # xds:/// target itself, which the channel keeps: tests/charts).
    assert resolve_target(listener) == f"xds:///{listener}"
    async with await OrchestratorClient.connect(listener, timeout=5) as client:
        yield client
    # grpcio 1.85 was seen to reuse a live xDS client's bootstrap for a new target: the next test's client must
    # not find this one (pointing at a stopped server). Its ADS stream closing says it is gone.
    gc.collect()
    await control_plane.wait_disconnected()


def port(orchestrator: Orchestrator) -> int:
    assert orchestrator.grpc is not None
    return orchestrator.grpc.port


async def served_by(client: OrchestratorClient, calls: int) -> Counter[str]:
    """Which orchestrator answered each of `calls` sequential calls (each call is one pick)."""
    counts: Counter[str] = Counter()
    for _ in range(calls):
        counts[(await client.status()).orchestrator_id] += 1
    return counts


async def test_calls_follow_eds_and_leave_a_removed_endpoint_without_a_restart(
    control_plane: ControlPlane, listener: str, orchestrators: dict[str, Orchestrator], xds_client: OrchestratorClient
) -> None:
    zones = [Locality(f"zone-{name}", 1, [port(o)]) for name, o in orchestrators.items()]
    first = await control_plane.serve(orchestrator_resources(listener, zones))
    # The first call waits for the listener, route, cluster and endpoints to arrive.
    assert (await xds_client.status()).orchestrator_id in orchestrators
    await control_plane.wait_acked(first)
    spread = await served_by(xds_client, 300)
    assert set(spread) == set(orchestrators), f"EDS lists three orchestrators, calls reached {dict(spread)}"
    each = binomial_range(300, 1 / 3)
    assert all(n in each for n in spread.values()), f"three equal localities should share calls: {dict(spread)}"

    removed = await control_plane.serve(orchestrator_resources(listener, zones[:2]))
    await control_plane.wait_acked(removed)

    async def none_to_c() -> None:
        spread = await served_by(xds_client, 20)
        assert "orch-c" not in spread, f"orch-c left EDS but still got calls: {dict(spread)}"

    await assert_eventually_async(none_to_c, timeout_sec=10, message="calls kept reaching the endpoint EDS removed")
    after = await served_by(xds_client, 60)
    assert set(after) == {"orch-a", "orch-b"}, f"only the two endpoints left in EDS should serve: {dict(after)}"
    # orch-c still serves: only the served endpoints changed, not the orchestrator.
    async with await OrchestratorClient.connect(f"ipv4:127.0.0.1:{port(orchestrators['orch-c'])}") as direct:
        assert (await direct.status()).orchestrator_id == "orch-c"


async def test_a_locality_weight_change_shifts_the_split(
    control_plane: ControlPlane, listener: str, orchestrators: dict[str, Orchestrator], xds_client: OrchestratorClient
) -> None:
    a, b = port(orchestrators["orch-a"]), port(orchestrators["orch-b"])
    equal = await control_plane.serve(orchestrator_resources(listener, [Locality("a", 1, [a]), Locality("b", 1, [b])]))
    await xds_client.status()
    await control_plane.wait_acked(equal)
    # 300 calls: the ranges for 1:1 and 1:4 (binomial_range) are then far apart, so neither passes for the other.
    before = await served_by(xds_client, 300)
    even, skewed_share = binomial_range(300, 1 / 2), binomial_range(300, 4 / 5)
    assert before["orch-b"] in even, f"weights 1:1 should split about evenly: {dict(before)}"

    skewed = await control_plane.serve(orchestrator_resources(listener, [Locality("a", 1, [a]), Locality("b", 4, [b])]))
    await control_plane.wait_acked(skewed)

    async def four_to_one() -> None:
        after = await served_by(xds_client, 300)
        assert after["orch-b"] in skewed_share, f"weights 1:4 should send about 240 of 300 to orch-b: {dict(after)}"

    await assert_eventually_async(
        four_to_one, timeout_sec=15, message="the split did not follow the new locality weights"
    )


async def test_a_served_retry_policy_makes_a_call_that_fails_once_succeed(
    control_plane: ControlPlane, listener: str, orchestrators: dict[str, Orchestrator], xds_client: OrchestratorClient
) -> None:
    proxy = await FaultProxy.start(f"127.0.0.1:{port(orchestrators['orch-a'])}")
    try:
        only = [Locality("a", 1, [proxy.port])]
        plain = await control_plane.serve(orchestrator_resources(listener, only))
        await xds_client.status()
        await control_plane.wait_acked(plain)

        # Without a served policy the failure reaches the caller: the channel's own retry config does not
        # apply under xds:/// (the resolver's service config replaces it).
        proxy.fail_next(1)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await xds_client.status()
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (proxy.attempts, proxy.failed) == (2, 1), "one call before, one failed attempt, no retry"

        retrying = await control_plane.serve(
            orchestrator_resources(
                listener,
                only,
                retry_policy={
                    "retryOn": "unavailable",
                    "numRetries": 2,
                    "retryBackOff": {"baseInterval": "0.01s", "maxInterval": "0.05s"},
                },
            )
        )
        await control_plane.wait_acked(retrying)

        async def retried() -> None:
            attempts = proxy.attempts
            proxy.fail_next(1)
            try:
                answer = await xds_client.status()
            except grpc.aio.AioRpcError as exc:
                raise AssertionError(f"the call failed although the route retries UNAVAILABLE: {exc.code()}") from exc
            assert answer.orchestrator_id == "orch-a"
            assert proxy.attempts - attempts == 2, "the call should have taken exactly one retry"

        await assert_eventually_async(retried, timeout_sec=10, message="the served retry policy was not applied")
    finally:
        await proxy.stop()


async def test_served_outlier_detection_ejects_a_failing_endpoint(
    control_plane: ControlPlane, listener: str, orchestrators: dict[str, Orchestrator], xds_client: OrchestratorClient
) -> None:
    failing = await FaultProxy.start(f"127.0.0.1:{port(orchestrators['orch-a'])}")
    try:
        failing.fail_always()
        zone = [Locality("one", 1, [failing.port, port(orchestrators["orch-b"])])]

        async def outcomes(calls: int) -> Counter[str]:
            seen: Counter[str] = Counter()
            for _ in range(calls):
                try:
                    seen[(await xds_client.status()).orchestrator_id] += 1
                except grpc.aio.AioRpcError as exc:
                    seen[exc.code().name] += 1
            return seen

        plain = await control_plane.serve(orchestrator_resources(listener, zone))
        await outcomes(1)
        await control_plane.wait_acked(plain)
        # Without outlier detection round_robin keeps sending every other call to the failing endpoint.
        without = await outcomes(20)
        assert without["UNAVAILABLE"] >= 8, f"half the calls should fail before detection: {dict(without)}"

        detecting = await control_plane.serve(
            orchestrator_resources(
                listener,
                zone,
                outlier_detection={
                    "interval": "0.5s",
                    "baseEjectionTime": "60s",
                    "maxEjectionPercent": 50,
                    # Failure-percentage ejection only: an endpoint failing over half of at least 5 calls goes.
                    "enforcingSuccessRate": 0,
                    "failurePercentageThreshold": 50,
                    "enforcingFailurePercentage": 100,
                    "failurePercentageMinimumHosts": 2,
                    "failurePercentageRequestVolume": 5,
                },
            )
        )
        await control_plane.wait_acked(detecting)

        async def ejected() -> None:
            before = failing.attempts
            seen = await outcomes(20)
            assert seen == Counter({"orch-b": 20}), f"the failing endpoint is still picked: {dict(seen)}"
            assert failing.attempts == before

        await assert_eventually_async(
            ejected, timeout_sec=15, interval_sec=0.2, message="outlier detection did not eject the endpoint"
        )
    finally:
        await failing.stop()


async def test_a_refused_route_leaves_calls_on_the_last_good_one(
    control_plane: ControlPlane, listener: str, orchestrators: dict[str, Orchestrator], xds_client: OrchestratorClient
) -> None:
    blue = orchestrator_resources(listener, [Locality("a", 1, [port(orchestrators["orch-a"])])], cluster="blue")
    green = orchestrator_resources(listener, [Locality("b", 1, [port(orchestrators["orch-b"])])], cluster="green")
    good = await control_plane.serve(blue)
    await xds_client.status()
    await control_plane.wait_acked(good)

    # Both clusters are served; the new route to green is one gRPC refuses (weighted clusters weighing 0).
    both = {
        **green,
        "clusters": blue["clusters"] + green["clusters"],
        "endpoints": blue["endpoints"] + green["endpoints"],
    }
    broken = json.loads(json.dumps(both))
    broken["routes"][0]["virtualHosts"][0]["routes"][0]["route"] = {
        "weightedClusters": {"clusters": [{"name": f"{listener}/green", "weight": 0}]}
    }
    bad = await control_plane.serve(broken)

    async def refused() -> None:
        state = (await control_plane.status())["types"][ROUTE]
        assert state.get("nack"), f"the client has not refused the route yet: {state}"
        assert state["nacked"] == bad, "the NACK is of the broken version"
        assert state["acked"] == good, "a NACK names the last version the client accepted"

    await assert_eventually_async(refused, timeout_sec=10)
    spread = await served_by(xds_client, 10)
    assert spread == Counter({"orch-a": 10}), f"calls must stay on the last good route: {dict(spread)}"

    fixed = await control_plane.serve(both)
    await control_plane.wait_acked(fixed)

    async def on_green() -> None:
        spread = await served_by(xds_client, 10)
        assert spread == Counter({"orch-b": 10}), f"the fixed route sends every call to green: {dict(spread)}"

    await assert_eventually_async(on_green, timeout_sec=10)


async def test_the_control_plane_refuses_a_malformed_snapshot_naming_it(control_plane: ControlPlane) -> None:
    resources = orchestrator_resources("orchestrator.test:9090", [Locality("a", 1, [9090])])
    resources["clusters"][0]["lbPolicyy"] = "ROUND_ROBIN"
    with pytest.raises(AssertionError, match=r"clusters\[0\].*lbPolicyy"):
        await control_plane.serve(resources)
    assert (await control_plane.status())["version"] == "0", "nothing was served"
