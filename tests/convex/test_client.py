"""The Convex binding over real loopback HTTP: URLs, auth headers, error mapping, retries."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from contracts.convex import ConvexStore, normalize_url
from contracts.convex.client import ConvexClient, NotCommitted, auth_header
from contracts.convex.standin import StandIn
from contracts.errors import InvalidInput, StoreFunctionError, StoreUnavailable
from contracts.models import EnqueueRequest, FailRequest, LeaseRef, MessagePayload
from contracts.retry import RetryPolicy
from tests.contract.helpers import TEST_BOX
from tests.convex.conftest import T0
from tests.fakes._server import FaultyServer, Request, Response

pytestmark = pytest.mark.anyio
convex = pytest.mark.convex

FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05, jitter_s=0.01)


def request(conversation_id: str = "c1", external_id: str | None = None) -> EnqueueRequest:
    payload = MessagePayload(
        provider="telegram", provider_user_id="u1", message_text="hi", external_message_id=external_id
    )
    return EnqueueRequest(conversation_id=conversation_id, agent_key="default", payload=payload)


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT: the stand-in reads its claims without verifying (a real backend verifies)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConvexEcho(FaultyServer):
    """A minimal Convex-shaped server that records requests and answers a canned value."""

    def __init__(self, value: Any = None, status: int = 200) -> None:
        super().__init__()
        self.value = value
        self.status = status
        self.requests: list[Request] = []

    def endpoint(self, method: str, path: str) -> str | None:
        return path.removeprefix("/api/") if path.startswith("/api/") else None

    def authorized(self, request: Request) -> Response | None:
        return None

    def route(self, endpoint: str, request: Request) -> Response:
        self.requests.append(request)
        return Response(self.status, {"status": "success", "value": self.value})


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://happy-animal-123.convex.cloud", "https://happy-animal-123.convex.cloud"),
        ("https://happy-animal-123.convex.site/", "https://happy-animal-123.convex.cloud"),
        ("  http://127.0.0.1:3210/ ", "http://127.0.0.1:3210"),
    ],
)
def test_urls_are_normalised_to_the_api_origin(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad", ["happy-animal.convex.cloud", "ftp://x.convex.cloud", "https://u:p@x.convex.cloud"])
def test_bad_urls_are_rejected_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"^url: "):
        normalize_url(bad)


def test_auth_headers() -> None:
    assert auth_header(token=None, deploy_key=None) is None
    assert auth_header(token="eyJ.abc.def", deploy_key=None) == "Bearer eyJ.abc.def"
    assert auth_header(token=None, deploy_key="prod:happy|key") == "Convex prod:happy|key"
    with pytest.raises(InvalidInput, match="auth_token"):
        auth_header(token="a", deploy_key="b")


# --------------------------------------------------------------------------- over a recording server


async def test_requests_carry_path_args_format_and_the_auth_header() -> None:
    with ConvexEcho(value={"ok": True, "leaseExpiresAt": 61_000, "now": 1_000}) as echo:
        store = ConvexStore(echo.url, auth_token="secret-jwt", namespace="myFactory")
        lease = LeaseRef(worker_id="w1", message_id="m1", lease_id="l1")
        assert (await store.worker_heartbeat(lease)).lease_expires_at == 61_000
        await store.aclose()
    (sent,) = echo.requests
    assert sent.path == "/api/mutation"
    assert sent.headers["authorization"] == "Bearer secret-jwt"
    assert sent.body == {
        "path": "myFactory:workerHeartbeat",
        "args": {"workerId": "w1", "messageId": "m1", "leaseId": "l1"},
        "format": "json",
    }


async def test_optional_arguments_are_omitted_never_null() -> None:
    with ConvexEcho(value=None) as echo:
        store = ConvexStore(echo.url)
        assert await store.worker_claim("w1") is None
        assert await store.ledger_update("L1", "gone") is False
        await store.aclose()
    claim, update = (r.body["args"] for r in echo.requests)
    assert claim == {"workerId": "w1"}
    assert update == {"launchId": "L1", "state": "gone"}
    assert "authorization" not in echo.requests[0].headers


async def test_json_integers_and_floats_are_both_accepted() -> None:
    with ConvexEcho(value=3) as echo:
        store = ConvexStore(echo.url, secrets_box=TEST_BOX)
        assert await store.import_secret("x", value=SecretStr("v")) == 3
        echo.value = 3.0
        assert await store.import_secret("x", value=SecretStr("v")) == 3
        await store.aclose()


async def test_a_timeout_is_unavailable_and_says_the_outcome_is_unknown() -> None:
    with ConvexEcho(value=True) as echo:
        echo.timeout_next("mutation", delay_s=2.0)
        store = ConvexStore(echo.url, timeout_s=0.2, retry=RetryPolicy(attempts=1))
        with pytest.raises(StoreUnavailable, match=r"no reply within 0\.2s") as caught:
            await store.worker_claim("w1")
        assert caught.value.retryable
        await store.aclose()


async def test_status_560_is_a_function_error_not_retried() -> None:
    with ConvexEcho() as echo:
        body = {"status": "error", "errorMessage": "[Request ID: 1] Server Error\nUncaught Error: boom"}
        echo.fail_next("query", 560, body=body)
        store = ConvexStore(echo.url, retry=FAST)
        with pytest.raises(StoreFunctionError, match="agentFactory:getMessage failed: Uncaught Error: boom"):
            await store.get_message("m1")
        assert echo.count("query") == 1
        await store.aclose()


async def test_tokens_never_appear_in_errors() -> None:
    with ConvexEcho() as echo:
        echo.fail_next("mutation", 401, body={"code": "Unauthenticated", "message": "bad token"})
        store = ConvexStore(echo.url, deploy_key="prod:happy|super-secret-key")
        with pytest.raises(StoreFunctionError) as caught:
            await store.now_ms()
        assert "super-secret-key" not in str(caught.value)
        assert "HTTP 401 Unauthenticated: bad token" in str(caught.value)
        await store.aclose()


async def test_a_closed_port_is_unavailable_naming_the_url_and_the_cause() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    store = ConvexStore(url, retry=FAST)
    with pytest.raises(StoreUnavailable) as caught:
        await store.queue_stats()
    message = str(caught.value)
    assert url in message
    assert "connection refused" in message
    assert "\n" not in message
    await store.aclose()


# --------------------------------------------------------------------------- against the stand-in


@convex
async def test_a_function_error_names_the_function(fresh: StandIn) -> None:
    store = ConvexStore(fresh.url, namespace="notDeployed")
    with pytest.raises(StoreFunctionError, match="notDeployed:storeNow failed: Could not find public function") as e:
        await store.wait_for_work(0)
    assert "namespace 'notDeployed'" in str(e.value)
    await store.aclose()


@convex
async def test_module_input_errors_map_to_the_typed_errors(fresh: StandIn) -> None:
    client = ConvexClient(fresh.url, namespace="agentFactory")
    args = {
        "conversationId": "c1",
        "agentKey": "default",
        "payload": {"provider": "t", "providerUserId": "u", "messageText": "x"},
        "priority": 101,
    }
    with pytest.raises(InvalidInput) as caught:
        await client.mutation("enqueue", args, retry=False)
    assert caught.value.field == "priority"
    with pytest.raises(StoreFunctionError, match=r"agentFactory:enqueue failed: .*Validator"):
        await client.mutation("enqueue", {"conversationId": "c1"}, retry=False)
    await client.aclose()


@convex
async def test_overload_is_retried_where_safe(fresh: StandIn) -> None:
    store = ConvexStore(fresh.url, retry=FAST)
    fresh.fail_next(2, 503)
    assert await store.now_ms() == T0  # a query-like call: retried through two 503s
    fresh.fail_next(1, 429)
    assert await store.enqueue(request(external_id="tg-1"))  # deduplicated: retried
    await store.aclose()


@convex
async def test_claims_and_plain_enqueues_are_retried_only_when_convex_refused_them(fresh: StandIn) -> None:
    store = ConvexStore(fresh.url, retry=FAST)
    fresh.fail_next(2, 503)  # Overloaded before running: nothing committed, so even this is safe
    await store.enqueue(request())
    assert (await store.queue_stats()).queued == 1
    fresh.fail_next(1, 503, after_run=True)  # the claim commits, then the connection drops
    with pytest.raises(StoreUnavailable, match="connection failed") as caught:
        await store.worker_claim("w1")
    assert not isinstance(caught.value, NotCommitted)
    stats = await store.queue_stats()
    assert (stats.processing, stats.queued) == (1, 0)  # one lease nobody holds: it expires, attempt counted
    await store.aclose()


async def test_a_proxy_error_is_an_unknown_outcome_not_retried_for_a_claim() -> None:
    with ConvexEcho(value=None) as echo:
        echo.fail_next("mutation", 503, body={"error": "upstream connect error"})  # not Convex's {code}
        store = ConvexStore(echo.url, retry=FAST)
        with pytest.raises(StoreUnavailable, match="HTTP 503") as caught:
            await store.worker_claim("w1")
        assert not isinstance(caught.value, NotCommitted)
        assert echo.count("mutation") == 1
        echo.fail_next("mutation", 503, body={"error": "upstream connect error"})
        echo.value = {"ok": False, "refused": "lease_lost", "now": 1_000}
        refused = await store.worker_heartbeat(LeaseRef(worker_id="w", message_id="m", lease_id="l"))
        assert refused.refused == "lease_lost"
        assert echo.count("mutation") == 3  # fenced by the lease: retried
        await store.aclose()


@convex
async def test_a_complete_whose_reply_was_lost_is_retried_and_reports_success(fresh: StandIn) -> None:
    store = ConvexStore(fresh.url, retry=FAST)
    await store.enqueue(request())
    job = await store.worker_claim("w1")
    assert job is not None
    fresh.fail_next(1, 503, after_run=True)
    assert (await store.worker_complete(LeaseRef(worker_id="w1", message_id=job.message_id, lease_id=job.lease_id))).ok
    stats = await store.queue_stats()
    assert (stats.done, stats.processing) == (1, 0)
    await store.aclose()


@convex
async def test_auth_modes(fresh: StandIn) -> None:
    fresh.reset(env={"FACTORY_AUTH": "identity"}, frozen_at_ms=T0)
    anonymous = ConvexStore(fresh.url)
    with pytest.raises(StoreFunctionError, match="requires a signed-in caller"):
        await anonymous.now_ms()
    signed = ConvexStore(fresh.url, auth_token=jwt({"sub": "worker-1", "iss": "https://issuer.test"}))
    assert await signed.now_ms() == T0
    admin = ConvexStore(fresh.url, deploy_key="standin-admin-key", namespace="agentFactoryAdmin")
    assert await admin.now_ms() == T0
    wrong_key = ConvexStore(fresh.url, deploy_key="nope", namespace="agentFactoryAdmin")
    with pytest.raises(StoreFunctionError, match="HTTP 401 BadAdminKey"):
        await wrong_key.now_ms()
    for store in (anonymous, signed, admin, wrong_key):
        await store.aclose()


@convex
async def test_the_standin_speaks_the_protocol_errors(fresh: StandIn) -> None:
    async with httpx.AsyncClient(base_url=fresh.url) as http:
        bad_json = await http.post("/api/query", content=b"{nope", headers={"content-type": "application/json"})
        assert (bad_json.status_code, bad_json.json()["code"]) == (400, "BadJsonBody")
        bad_format = await http.post("/api/query", json={"path": "agentFactory:queueStats", "args": {}, "format": "x"})
        assert (bad_format.status_code, bad_format.json()["code"]) == (400, "BadFormat")
        kind = await http.post("/api/query", json={"path": "agentFactory:storeNow", "args": {}, "format": "json"})
        assert "defined as Mutation" in kind.json()["errorMessage"]
        internal = await http.post("/api/mutation", json={"path": "agentFactoryAdmin:storeNow", "args": {}})
        assert "Could not find public function" in internal.json()["errorMessage"]
        floats = await http.post("/api/mutation", json={"path": "agentFactory:storeNow", "args": {}})
        assert floats.text == f'{{"status":"success","value":{T0}.0}}'


@convex
async def test_wait_for_work_wakes_when_work_arrives_or_falls_due(fresh: StandIn) -> None:
    store = ConvexStore(fresh.url, wait_poll_s=0.02)
    assert await store.wait_for_work(0.1) is False
    woke: list[bool] = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            woke.append(await store.wait_for_work(5))

        tg.start_soon(wait)
        await anyio.sleep(0.1)
        await store.enqueue(request())
    assert woke == [True]
    job = await store.worker_claim("w1")
    assert job is not None
    lease = LeaseRef(worker_id="w1", message_id=job.message_id, lease_id=job.lease_id)
    await store.worker_fail(FailRequest(lease=lease, error_message="x"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.1)
        await anyio.to_thread.run_sync(fresh.advance, 2_000)  # the retry falls due
    assert woke == [True, True]
    await store.aclose()


@convex
async def test_logs_never_carry_worker_ids_leases_or_tokens(fresh: StandIn) -> None:
    token = jwt({"sub": "worker-secret-subject", "iss": "https://issuer.test"})
    store = ConvexStore(fresh.url, auth_token=token, retry=FAST)
    await store.enqueue(request())
    job = await store.worker_claim("worker-7f3a")
    assert job is not None
    fresh.fail_next(2, 503)
    with capture_logs() as logs:
        beat = await store.worker_heartbeat(
            LeaseRef(worker_id="worker-7f3a", message_id=job.message_id, lease_id=job.lease_id)
        )
    assert beat.ok
    retries = [entry for entry in logs if entry["event"] == "convex call unavailable"]
    assert [(entry["attempt"], entry["attempts"]) for entry in retries] == [(1, 3), (2, 3)]
    assert retries[0]["function"] == "agentFactory:workerHeartbeat"
    for secret in ("worker-7f3a", job.lease_id, token, "worker-secret-subject"):
        assert secret not in repr(logs)
    await store.aclose()


@convex
async def test_concurrent_workers_drain_the_queue_in_per_conversation_order(fresh: StandIn) -> None:
    store = ConvexStore(fresh.url)
    for i in range(10):
        for conv in range(8):
            payload = MessagePayload(provider="app", provider_user_id="u", message_text=f"{conv}:{i}")
            await store.enqueue(EnqueueRequest(conversation_id=f"c{conv}", agent_key="default", payload=payload))
    delivered: list[str] = []

    async def worker(name: str) -> None:
        while (job := await store.worker_claim(name)) is not None or (await store.queue_stats()).queued:
            if job is None:
                await anyio.sleep(0.01)
                continue
            delivered.append(job.payload.message_text)
            lease = LeaseRef(worker_id=name, message_id=job.message_id, lease_id=job.lease_id)
            assert (await store.worker_complete(lease)).ok

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(worker, f"w{n}")
    assert sorted(delivered) == sorted(f"{c}:{i}" for c in range(8) for i in range(10))
    for conv in range(8):
        mine = [int(text.split(":")[1]) for text in delivered if text.startswith(f"{conv}:")]
        assert mine == list(range(10))
    await store.aclose()
