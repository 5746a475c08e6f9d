"""The Gateway: config in, plans and answers out, receipts written; sync and async share a core."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from pydantic import ValidationError

from intentmesh._cache import ResponseCache
from intentmesh._catalog import Catalog, CatalogModel, default_catalog
from intentmesh._discovery import PriceBook
from intentmesh._intent import Intent
from intentmesh._portal import LoopThread
from intentmesh._result import InferenceResult, _attach_receipt
from intentmesh._zeroconf import with_zero_config
from intentmesh.adapters import add_secrets, build_backend
from intentmesh.adapters.base import Backend, ChatRequest, Chunk
from intentmesh.config import (
    BackendConfig,
    GatewayConfig,
    LimitConfig,
    discover_config_path,
    load_config,
    parse_config,
)
from intentmesh.errors import ConfigurationError, NoRouteError
from intentmesh.fleet import AccountStore, Limited, Limits, LocalAccounts, open_fleet
from intentmesh.router import (
    HEAD_SIZE,
    AttemptLimits,
    BreakerPolicy,
    Budget,
    Call,
    Candidate,
    Executor,
    HealthBook,
    HealthShare,
    Offer,
    Outcome,
    Plan,
    RetryPolicy,
    RouteIndex,
    RouteRequest,
    StreamRun,
    estimate_prompt_tokens,
    solve,
)
from intentmesh.verify import LevelRunner

if TYPE_CHECKING:
    from intentmesh.receipts import (
        Ledger,
        LedgerReport,
        Receipt,
        ReceiptWriter,
        RequestDigests,
        SigningKey,
    )
    from intentmesh.telemetry import RequestSpan, Telemetry

__all__ = ["Gateway", "ResultStream"]

_INDEXED_LEVELS = frozenset({"none", "receipt"})


class Gateway:
    """Routes intents to backends. Build with ``Gateway()``, ``Gateway(config)`` or
    :meth:`from_config`; ``backends=`` replaces configured adapters with your own objects
    (fakes in tests). Use as a (async) context manager or call :meth:`close`.
    """

    def __init__(
        self,
        config: GatewayConfig | str | os.PathLike[str] | None = None,
        *,
        backends: Mapping[str, Backend] | None = None,
        ledger: Ledger | str | os.PathLike[str] | None = None,
        signing_key: SigningKey | None = None,
        catalog: Catalog | None = None,
        health: HealthBook | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = _coerce_config(config)
        if config is None:  # zero-config: networks whose API key is in the environment
            self.config = with_zero_config(self.config)
        add_secrets(*self.config.secret_values())  # never echoed back from upstream errors
        self.catalog = catalog or _catalog_with(self.config)
        routing = self.config.routing
        self.fleet = open_fleet(self.config.state)  # None: in-process state (the default)
        self.telemetry = telemetry or _telemetry(self.config)  # None: off, costs nothing
        self.health = health or HealthBook(
            BreakerPolicy(routing.failure_threshold, routing.cooldown_s),
            share=self._health_share(),
        )
        self.backends: dict[str, Backend] = {}
        for entry in self.config.backends:
            if entry.enabled:
                given = (backends or {}).get(entry.name)
                self.backends[entry.name] = given or _build(self.config, entry)
        unknown = set(backends or {}) - set(self.backends)
        if unknown:
            raise ConfigurationError(
                f"backends= names {sorted(unknown)} that are not enabled in the config"
            )
        self._networks = {e.name: e.label for e in self.config.backends if e.enabled}
        self.verification = _level_runner(self.config, self.health)
        self._offers = self._offers_from_config()
        self._configured_offers = self._offers
        self.prices = PriceBook(
            self.backends,
            self.config.backends,
            self.catalog,
            shared=self.fleet.prices if self.fleet else None,
        )
        self._executor = Executor(
            self.backends, self.health, self._retry_policies(), limits=self._attempt_limits()
        )
        self._index = RouteIndex(self.health)
        self._offers_version, self._offers_at = -1, -math.inf
        self._cache = ResponseCache(routing.cache_size, routing.cache_ttl_s)
        self._ledger_arg = ledger
        self._ledger_obj: Ledger | None = ledger if _is_ledger(ledger) else None  # type: ignore[assignment]
        self._key = signing_key
        self._writer: ReceiptWriter | None = None
        self._in_flight = 0  # calls and open streams: a lone one may write its receipt inline
        self._accounts: AccountStore | None = None
        self._portal = LoopThread()
        # Closes the private loop (and its connections) at exit if close() was never called.
        self._finalizer = weakref.finalize(self, self._portal.close)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **kwargs: Any) -> Gateway:
        """Load the TOML file at ``path``."""
        return cls(load_config(path), **kwargs)

    # -- planning ---------------------------------------------------------------------

    def route_request(self, intent: Intent) -> RouteRequest:
        """The solver's view of an intent (canonical models, token bounds, limits)."""
        return self._route_request(intent, intent.chat_messages())

    def _route_request(self, intent: Intent, messages: list[dict[str, Any]]) -> RouteRequest:
        """:meth:`route_request` for ``intent`` whose ``chat_messages()`` are ``messages``."""
        upper, expected = estimate_prompt_tokens(messages)
        return RouteRequest(
            models=tuple(self.catalog.resolve(m) for m in intent.models),
            prompt_tokens_max=upper,
            prompt_tokens_expected=expected,
            max_tokens=intent.max_tokens,
            max_price_usd=intent.max_price_usd,
            max_latency_ms=intent.max_latency_ms,
            verifiability=intent.verifiability,
            optimize=intent.optimize,
            networks=frozenset(intent.networks) if intent.networks is not None else None,
            exclude=frozenset(intent.exclude or ()),
        )

    def plan(self, intent: Intent | None = None, **fields: Any) -> Plan:
        """Dry run: ordered candidates with quotes, and every rejection with its reason."""
        intent = _coerce_intent(intent, fields)
        if self.prices.active and not self.prices.warmed:
            self.refresh_prices()
        plan = solve(self.route_request(intent), self._offers, self.health, self._networks)
        return self.verification.shape_plan(intent, plan)

    @property
    def offers(self) -> list[Offer]:
        """Every (backend, model, price) the solver can choose from."""
        return list(self._offers)

    # -- async API --------------------------------------------------------------------

    async def ainfer(self, intent: Intent | None = None, **fields: Any) -> InferenceResult:
        """Serve ``intent`` on the best feasible backend, failing over as needed."""
        intent = _coerce_intent(intent, fields)
        if self.telemetry is None:
            return await self._ainfer(intent)
        span = self.telemetry.start(intent)
        try:
            result = await self._ainfer(intent)
        except BaseException as exc:
            span.fail(exc)
            raise
        span.finish(result)
        return result

    async def _ainfer(self, intent: Intent) -> InferenceResult:
        started = time.perf_counter()
        self._in_flight += 1
        try:
            await self._update_prices()
            cached = await self._cached(intent, started)
            if cached is not None:
                return cached
            return await self._complete(intent, self._call(intent), started)
        finally:
            self._in_flight -= 1

    def astream(self, intent: Intent | None = None, **fields: Any) -> ResultStream:
        """Stream the answer: ``async for chunk in gw.astream(i)``; ``.result`` at the end.

        ``await stream.aopen()`` first to fail (and learn the backend) before any content.
        """
        intent = _coerce_intent(intent, fields)
        return ResultStream(self, intent)

    # -- sync API ---------------------------------------------------------------------

    def infer(self, intent: Intent | None = None, **fields: Any) -> InferenceResult:
        """Blocking :meth:`ainfer`; safe to call from inside a running event loop's thread."""
        return self._portal.run(self.ainfer(intent, **fields))

    def stream(self, intent: Intent | None = None, **fields: Any) -> ResultStream:
        """Blocking :meth:`astream`: ``for chunk in gw.stream(i)``; ``.result`` at the end."""
        return self.astream(intent, **fields)

    # -- receipts ---------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The receipt ledger (opened on first use)."""
        if self._ledger_obj is None:
            from intentmesh.receipts import Ledger, default_ledger_path

            arg = self._ledger_arg if not _is_ledger(self._ledger_arg) else None
            path = str(arg or self.config.receipts.ledger or default_ledger_path())
            url = path.startswith(("postgresql://", "postgres://"))
            self._ledger_obj = Ledger(path if url else Path(path).expanduser())
        return self._ledger_obj

    @property
    def signing_key(self) -> SigningKey:
        """The Ed25519 key that signs receipts (created with 0600 permissions on first use)."""
        if self._key is None:
            from intentmesh.receipts import SigningKey, default_key_path

            cfg = self.config.receipts
            if cfg.key_env and os.environ.get(cfg.key_env):
                self._key = SigningKey.from_env(cfg.key_env)
            else:
                self._key = SigningKey.load_or_create(Path(cfg.key or default_key_path()))
        return self._key

    @property
    def public_key(self) -> str:
        """The hex Ed25519 public key receipts are signed with (give it to whoever verifies)."""
        return self.signing_key.public_key_hex()

    def verify_ledger(self) -> LedgerReport:
        """Check every signature and the hash chain; the report names the first bad receipt."""
        return self.ledger.verify()

    # -- named limits (budgets, rates) ------------------------------------------------

    @property
    def accounts(self) -> AccountStore:
        """Where named limits keep their state: Redis with ``[state]``, else this process."""
        if self._accounts is None:
            self._accounts = self.fleet.accounts if self.fleet else LocalAccounts()
        return self._accounts

    def limit(self, name: str, **declared: Any) -> Limited:
        """Calls that count against the named limit ``name`` (a ``[[limits]]`` entry, or
        ``budget_usd=``/``requests_per_min=``/``tokens_per_min=``/``usd_per_day=`` given here).

        A ``[[server.keys]]`` entry of the same name shares the account across the fleet.
        """
        found = next((x for x in self.config.limits if x.name == name), None)
        if found is None and not declared:
            known = [x.name for x in self.config.limits] or ["none configured"]
            raise ConfigurationError(
                f"no [[limits]] entry named {name!r} (known: {', '.join(known)}); add one, "
                "or pass budget_usd=, requests_per_min=, tokens_per_min= or usd_per_day="
            )
        base = found.model_dump(exclude={"name"}) if found is not None else {}
        try:
            entry = LimitConfig(name=name, **{**base, **declared})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigurationError(f"limit {name!r}: {where}: {err['msg']}") from None
        limits = Limits(
            entry.budget_usd, entry.requests_per_min, entry.tokens_per_min, entry.usd_per_day
        )
        return Limited(self, name, limits, self.accounts)

    # -- live prices ------------------------------------------------------------------

    async def arefresh_prices(self) -> None:
        """Fetch live prices and model lists now (normally lazy and off the hot path)."""
        await self.prices.arefresh()
        self._offers = self.prices.offers(self._configured_offers)
        self._offers_version, self._offers_at = self.prices.version, self.prices.clock()

    def refresh_prices(self) -> None:
        """Blocking :meth:`arefresh_prices`."""
        self._portal.run(self.arefresh_prices())

    async def _update_prices(self) -> None:
        if self.prices.active:
            await self.prices.ensure()
            # Offers are rebuilt when prices were fetched, and at most once a second otherwise
            # (price ages and freshness), not on every call: that work grows with the backends.
            now = self.prices.clock()
            if self.prices.version != self._offers_version or now - self._offers_at >= 1.0:
                self._offers = self.prices.offers(self._configured_offers)
                self._offers_version, self._offers_at = self.prices.version, now

    # -- health probes ----------------------------------------------------------------

    async def aprobe(self, timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
        """Probe every backend at once (model list, or Ritual's ``/health``).

        A failure counts against the backend's circuit breaker, a success closes it, and the
        round trip raises the backend's latency prior; configured models a backend no longer
        lists are marked gone. Returns each backend's result.
        """
        names = list(self.backends)
        results = await asyncio.gather(*(self.aprobe_backend(n, timeout_s) for n in names))
        return dict(zip(names, results, strict=True))

    def probe(self, timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
        """Blocking :meth:`aprobe`."""
        return self._portal.run(self.aprobe(timeout_s))

    async def aprobe_backend(self, name: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """Probe one backend and feed the result to its health (see :meth:`aprobe`)."""
        from intentmesh._probe import probe_backend

        wanted = [o.provider_model for o in self._offers if o.backend == name]
        result = await probe_backend(self.backends[name], wanted, timeout_s)
        if result["ok"]:
            self.health.record_success(name)
            self.health.observe_probe(name, result["latency_ms"])
            for model in result.get("missing_models", ()):
                self.health.mark_gone(name, model)
        elif result["ok"] is False:
            self.health.record_failure(
                name, result.get("error_kind", "unavailable"), result.get("error", "")
            )
        return result

    # -- lifecycle --------------------------------------------------------------------

    async def aclose(self) -> None:
        await self.prices.aclose()
        if self.fleet is not None:
            await self.fleet.aclose()
        await self.verification.aclose()
        for backend in self.backends.values():
            await backend.aclose()

    def close(self) -> None:
        """Close connections on the private loop, the ledger, and stop the loop thread."""
        if self._portal.started:
            self._portal.run(self.aclose())
        self._portal.close()
        if self._writer is not None:
            self._writer.close()  # commits what is queued
            self._writer = None
        if self.fleet is not None:
            self.fleet.close()
        if self._ledger_obj is not None and not _is_ledger(self._ledger_arg):
            self._ledger_obj.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()

    # -- internals --------------------------------------------------------------------

    def _health_share(self) -> HealthShare | None:
        if self.fleet is None:
            return None
        return self.fleet.health_share([e.name for e in self.config.backends if e.enabled])

    def _offers_from_config(self) -> list[Offer]:
        offers: list[Offer] = []
        for entry in self.config.backends:
            if not entry.enabled:
                continue
            levels = self.verification.levels_of(entry)
            for model in entry.models:
                offers.append(
                    Offer(
                        backend=entry.name,
                        network=entry.label,
                        model=self.catalog.resolve(model.name),
                        provider_model=model.provider_id,
                        input_price=model.input_price,
                        output_price=model.output_price,
                        latency_prior_ms=model.latency_ms or entry.latency_ms,
                        verifiability=levels,
                        operator=entry.operator or entry.name,
                        context_length=model.context_length or self._context_of(model.name),
                    )
                )
        return offers

    def _context_of(self, model: str) -> int | None:
        known = self.catalog.models.get(self.catalog.resolve(model))
        return known.context_length if known is not None else None

    def _attempt_limits(self) -> dict[str, AttemptLimits]:
        return {
            e.name: AttemptLimits(e.timeout_s, e.first_token_timeout_s, e.stall_timeout_s)
            for e in self.config.backends
        }

    def _retry_policies(self) -> dict[str, RetryPolicy]:
        r = self.config.routing
        return {
            e.name: RetryPolicy(e.retries, r.backoff_s, r.backoff_max_s, r.max_retry_after_s)
            for e in self.config.backends
        }

    def _route(
        self, intent: Intent, messages: list[dict[str, Any]]
    ) -> tuple[Plan, Callable[[], Sequence[Candidate]] | None]:
        """The plan a call runs: the head of the pre-ranked index for ``none``/``receipt``
        (time independent of the number of backends); the full solve for other levels, and
        when nothing is feasible (so that the error names every reason).

        With a head, the second value solves for the rest of the ranking, which the executor
        asks for only if every candidate of the head failed (failover is never cut short).
        """
        request = self._route_request(intent, messages)
        if intent.verifiability in _INDEXED_LEVELS:
            head = self._index.head(request, self._offers)
            if head:
                plan = Plan(request.models, head, (), request)
                if len(head) < HEAD_SIZE:
                    return plan, None
                return plan, lambda: self._solve(request).candidates
        return self.verification.shape_plan(intent, self._solve(request)), None

    def _solve(self, request: RouteRequest) -> Plan:
        return solve(request, self._offers, self.health, self._networks)

    def _call(self, intent: Intent) -> Call:
        """Plan, and raise NoRouteError with every reason when nothing is feasible."""
        messages = intent.chat_messages()  # once: routing and every attempt's request
        plan, more = self._route(intent, messages)
        if not plan.candidates:
            raise NoRouteError(" or ".join(intent.models), plan.rejections, self._hint(plan))
        extra = {
            k: v
            for k in ("tools", "tool_choice", "response_format")
            if (v := getattr(intent, k)) is not None
        }

        def build(cand: Candidate, remaining: float | None) -> ChatRequest:
            return ChatRequest(
                model=cand.provider_model,
                messages=messages,
                max_tokens=intent.max_tokens,
                temperature=intent.temperature,
                top_p=intent.top_p,
                seed=intent.seed,
                stop=intent.stop,
                timeout_s=remaining,
                extra=extra,
            )

        deadline = None
        if intent.max_latency_ms is not None:
            deadline = time.monotonic() + intent.max_latency_ms / 1000
        return Call(
            plan,
            build,
            Budget(intent.max_price_usd),
            deadline,
            self._hedge_delay(intent, plan),
            max_ttft_s=None if intent.max_ttft_ms is None else intent.max_ttft_ms / 1000,
            stall_s=None if intent.stall_ms is None else intent.stall_ms / 1000,
            on_midstream=intent.on_midstream,
            more=more,
        )

    async def _cached(self, intent: Intent, started: float) -> InferenceResult | None:
        """The cached answer to ``intent`` (with a fresh receipt), if caching is on and it hits."""
        key = self._cache.key_for(intent, self.catalog) if intent.cache else None
        hit = self._cache.get(key) if key is not None else None
        return await self._from_cache(intent, hit, started) if hit is not None else None

    async def _complete(self, intent: Intent, call: Call, started: float) -> InferenceResult:
        """Run ``call`` to one whole answer verified at the intent's level; receipt; cache."""
        digests = self._request_digests(intent)
        outcome = await self.verification.complete(self._executor, intent, call)
        result = await self._finish(intent, call, outcome, started, digests)
        key = self._cache.key_for(intent, self.catalog) if intent.cache else None
        if key is not None:
            self._cache.put(key, result)
        return result

    def _hedge_delay(self, intent: Intent, plan: Plan) -> float | None:
        if intent.hedge is False or len(plan.candidates) < 2:
            return None
        if intent.hedge is True:
            floor = self.config.routing.hedge_min_ms
            return max(floor, plan.candidates[0].p95_latency_ms) / 1000
        return float(intent.hedge) / 1000

    def _hint(self, plan: Plan) -> str:
        served = {o.model for o in self._offers}
        unknown = [m for m in plan.models if m not in served and self.catalog.canonical(m) is None]
        if not unknown:
            return ""
        close = self.catalog.suggest(unknown[0], served)
        did_you_mean = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown model {unknown[0]!r}{did_you_mean}"

    def _request_digests(self, intent: Intent) -> RequestDigests | None:
        """The receipt's digests of ``intent``, worked out while the upstream answers (the
        loop runs them once this task waits), when the answer will get a receipt."""
        if intent.verifiability == "none" or not self.config.receipts.enabled:
            return None
        from intentmesh.receipts import RequestDigests

        digests = RequestDigests(intent)
        asyncio.get_running_loop().call_soon(digests.compute)
        return digests

    async def _finish(
        self,
        intent: Intent,
        call: Call,
        outcome: Outcome,
        started: float,
        digests: RequestDigests | None = None,
    ) -> InferenceResult:
        cand, completion = outcome.candidate, outcome.completion
        total_cost = sum(a.cost_usd for a in call.attempts)
        result = InferenceResult(
            text=completion.text,
            backend=cand.backend,
            network=cand.offer.network,
            model=cand.model,
            provider_model=cand.provider_model,
            usage=outcome.usage,
            cost_usd=total_cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            attempts=tuple(call.attempts),
            receipt=None,
            finish_reason=completion.finish_reason,
            ttft_ms=outcome.ttft_ms,
            quote=cand,
            flags=tuple(outcome.flags),
            tool_calls=completion.tool_calls,
            audit=outcome.audit,
        )
        return await self._with_receipt(intent, result, call, digests)

    async def _with_receipt(
        self,
        intent: Intent,
        result: InferenceResult,
        call: Call | None,
        digests: RequestDigests | None = None,
    ) -> InferenceResult:
        if intent.verifiability == "none" or not self.config.receipts.enabled:
            return result
        receipt = await self._issue_receipt(intent, result, call, digests)
        return _attach_receipt(result, receipt)  # every caller passes a result of its own

    async def _issue_receipt(
        self,
        intent: Intent,
        result: InferenceResult,
        call: Call | None,
        digests: RequestDigests | None,
    ) -> Receipt:
        """Signed and stored on the receipt writer's thread; committed before it returns
        unless ``[receipts] commit = "async"`` (docs/receipts.md)."""
        from intentmesh.receipts import receipt_fields

        # HasEndpoint's attribute, read without a runtime Protocol check (~15 µs a call)
        host = getattr(self.backends.get(result.backend), "endpoint_host", None) or ""
        fields = receipt_fields(intent, result, host, digests)
        fields.update(self.verification.receipt_fields(result))
        writer = self._receipt_writer()
        if writer is None:  # a ledger-like object of the caller's: its own append, inline
            return self.ledger.append(fields, self.signing_key)
        return await writer.asubmit(fields, alone=self._in_flight <= 1)

    def _receipt_writer(self) -> ReceiptWriter | None:
        if self._writer is None:
            from intentmesh.receipts import Ledger, ReceiptWriter

            ledger = self.ledger
            if not isinstance(ledger, Ledger):
                return None
            cfg = self.config.receipts
            self._writer = ReceiptWriter(
                ledger, self.signing_key, mode=cfg.commit, async_window_ms=cfg.async_window_ms
            )
        return self._writer

    async def _from_cache(
        self, intent: Intent, hit: InferenceResult, started: float
    ) -> InferenceResult:
        result = replace(
            hit,
            cached=True,
            cost_usd=0.0,
            attempts=(),
            receipt=None,
            latency_ms=(time.perf_counter() - started) * 1000,
            flags=(*hit.flags, "cache_hit"),
        )
        return await self._with_receipt(intent, result, None)


class ResultStream:
    """Chunks of one streamed answer, usable with ``async for`` and plain ``for``.

    :meth:`aopen` does everything that can fail before content: it updates live prices,
    plans, and waits for the first chunk; for the levels that must be verified whole
    (``attested``, ``consensus``, ``proof``) it waits for the verified answer, then yields it
    as one chunk. It raises exactly what :meth:`Gateway.ainfer` raises. After it, ``backend``,
    ``network`` and ``model`` name the answering backend and its (canonical) model.
    Iterating calls it when it has not run; :meth:`open` is its blocking twin.

    After the last chunk, ``result`` holds the :class:`InferenceResult` with usage, cost and
    receipt. Streams fail over freely before the first token; after it, a failure raises
    :class:`~intentmesh.errors.MidStreamError` with the text already delivered.
    """

    def __init__(self, gateway: Gateway, intent: Intent) -> None:
        self._gateway = gateway
        self._intent = intent
        self.result: InferenceResult | None = None
        self.backend = ""
        self.network = ""
        self.model = ""
        self._opened = False
        self._failure: BaseException | None = None
        self._started = 0.0
        self._call: Call | None = None
        self._run: StreamRun | None = None
        self._head: list[Chunk] = []
        self._rest: AsyncGenerator[Chunk, None] | None = None
        self._gen: AsyncGenerator[Chunk, None] | None = None
        self._span: RequestSpan | None = None
        self._counted = False  # counted in the gateway's calls in flight

    async def aopen(self) -> Self:
        """Plan and start the stream; return once its first chunk (or verified answer) is in.

        Raises what :meth:`Gateway.ainfer` raises; calling it again returns the same stream
        (or raises the same error).
        """
        if self._failure is not None:
            raise self._failure
        if self._opened:
            return self
        self._opened = True
        telemetry = self._gateway.telemetry
        self._span = telemetry.start(self._intent) if telemetry is not None else None
        self._counted = True
        self._gateway._in_flight += 1
        try:
            await self._open()
        except BaseException as exc:
            self._settled()
            self._failure = exc
            if self._span is not None:
                self._span.fail(exc)
            raise
        return self

    def open(self) -> Self:
        """Blocking :meth:`aopen`, for streams from :meth:`Gateway.stream`."""
        return self._gateway._portal.run(self.aopen())

    async def _open(self) -> None:
        gw, intent = self._gateway, self._intent
        self._started = time.perf_counter()
        await gw._update_prices()
        if gw.verification.buffers(intent):  # verified whole before any of it is shown
            result = await gw._cached(intent, self._started)
            if result is None:
                self._call = gw._call(intent)
                result = await gw._complete(intent, self._call, self._started)
            self._whole(result)
            return
        call = self._call = gw._call(intent)
        self._run = gw._executor.stream(call)
        self._rest = cast(AsyncGenerator[Chunk, None], self._run.__aiter__())
        with contextlib.suppress(StopAsyncIteration):
            self._head.append(await self._rest.__anext__())
        winner = next((a for a in reversed(call.attempts) if a.outcome == "ok"), None)
        if winner is not None:
            self.backend, self.network, self.model = winner.backend, winner.network, winner.model

    def spent_usd(self) -> float:
        """What the stream has cost so far plus what is still reserved (an upper bound)."""
        if self.result is not None:
            return self.result.cost_usd
        if self._call is None:
            return 0.0
        return self._call.budget.committed + self._call.budget.reserved

    def __aiter__(self) -> AsyncIterator[Chunk]:
        if self._gen is None:
            self._gen = self._iterate()
        return self._gen

    def __iter__(self) -> Iterator[Chunk]:
        return self._gateway._portal.iterate(self.__aiter__())

    @property
    def text(self) -> str:
        return self.result.text if self.result is not None else ""

    async def aclose(self) -> None:
        """Stop a stream that did not run to its end (closes the upstream request)."""
        for gen in (self._gen, self._rest):
            if gen is not None:
                await gen.aclose()
        self._settled()

    def _settled(self) -> None:
        """No longer in flight (once)."""
        if self._counted:
            self._counted = False
            self._gateway._in_flight -= 1

    def _whole(self, result: InferenceResult) -> None:
        self.result = result
        self.backend, self.network, self.model = result.backend, result.network, result.model
        self._head = [
            Chunk(
                text=result.text, finish_reason=result.finish_reason, tool_calls=result.tool_calls
            ),
            Chunk(usage=result.usage, model=result.provider_model),
        ]

    async def _iterate(self) -> AsyncGenerator[Chunk, None]:
        try:
            await self.aopen()
            while self._head:
                yield self._head.pop(0)
            if self._rest is None or self._run is None or self._call is None:
                self._settled()
                if self._span is not None and self.result is not None:
                    self._span.finish(self.result)
                return
            async for chunk in self._rest:
                yield chunk
        except BaseException as exc:
            self._settled()
            if self._span is not None and not isinstance(exc, GeneratorExit):
                self._span.fail(exc)
            raise
        finally:  # closed early: close the executor's stream (and the upstream) with it
            if self._rest is not None:
                await self._rest.aclose()
        assert self._run is not None and self._run.outcome is not None and self._call is not None
        gw = self._gateway
        try:
            self.result = await gw._finish(
                self._intent, self._call, self._run.outcome, self._started
            )
        finally:
            self._settled()
        if self._span is not None:
            self._span.finish(self.result)


def _coerce_config(config: GatewayConfig | str | os.PathLike[str] | None) -> GatewayConfig:
    if isinstance(config, GatewayConfig):
        return config
    if config is not None:
        return load_config(config)
    found = discover_config_path()
    return load_config(found) if found else parse_config("", "<defaults>")


def _coerce_intent(intent: Intent | None, fields: dict[str, Any]) -> Intent:
    if intent is None:
        return Intent(**fields)
    if not isinstance(intent, Intent):
        raise TypeError(f"expected an Intent, got {type(intent).__name__}")
    if fields:
        return Intent(**{**intent.model_dump(exclude_unset=True), **fields})
    return intent


def _catalog_with(config: GatewayConfig) -> Catalog:
    catalog = Catalog(default_catalog().models.values())
    for entry in config.models:
        known = catalog.canonical(entry.name)
        base = catalog.models.get(known) if known else None
        aliases = (*(base.aliases if base else ()), *entry.aliases)
        catalog.add(
            CatalogModel(
                known or entry.name,
                entry.family or (base.family if base else ""),
                entry.context_length or (base.context_length if base else None),
                aliases,
            )
        )
    return catalog


def _level_runner(config: GatewayConfig, health: HealthBook) -> LevelRunner:
    """The verifiability levels; an ``attestation``/``proof`` error names file, line, key."""
    try:
        return LevelRunner(config, health)
    except ConfigurationError as exc:
        # The verifiers name their backend first: "backend 'x': attestation.chute_id ...".
        named = [e for e in config.backends if exc.detail.startswith(f"backend {e.name!r}")]
        entry = named[0] if named else None
        if entry is None:
            raise
        if exc.key is None and (entry.attestation is None) != (entry.proof is None):
            exc.key = "attestation" if entry.attestation is not None else "proof"
        raise config.located(exc, entry.name) from None


def _build(config: GatewayConfig, entry: BackendConfig) -> Backend:
    """The adapter for ``entry``; its configuration errors name file, line and key."""
    try:
        return build_backend(entry)
    except ConfigurationError as exc:
        raise config.located(exc, entry.name) from None


def _telemetry(config: GatewayConfig) -> Telemetry | None:
    if not config.otel.enabled:
        return None
    from intentmesh.telemetry import Telemetry

    return Telemetry()


def _is_ledger(value: object) -> bool:
    return hasattr(value, "append") and hasattr(value, "verify")
