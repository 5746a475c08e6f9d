"""The Gateway: config in, plans and answers out, receipts written; sync and async share a core."""

from __future__ import annotations

import asyncio
import math
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intentmesh._cache import ResponseCache
from intentmesh._catalog import Catalog, CatalogModel, default_catalog
from intentmesh._discovery import PriceBook
from intentmesh._intent import Intent
from intentmesh._portal import LoopThread
from intentmesh._result import InferenceResult
from intentmesh._zeroconf import with_zero_config
from intentmesh.adapters._registry import build_backend
from intentmesh.adapters.base import Backend, ChatRequest, Chunk
from intentmesh.config import GatewayConfig, discover_config_path, load_config, parse_config
from intentmesh.errors import ConfigurationError, NoRouteError
from intentmesh.router import BreakerPolicy, Candidate, HealthBook, Offer, Plan, RouteRequest
from intentmesh.router._executor import Budget, Call, Executor, Outcome, RetryPolicy
from intentmesh.router._index import RouteIndex
from intentmesh.router._solver import solve
from intentmesh.router._tokens import estimate_prompt_tokens
from intentmesh.verify import LevelRunner

if TYPE_CHECKING:
    from intentmesh.receipts import Ledger, LedgerReport, Receipt, SigningKey
    from intentmesh.receipts._writer import ReceiptWriter

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
    ) -> None:
        self.config = _coerce_config(config)
        if config is None:  # zero-config: networks whose API key is in the environment
            self.config = with_zero_config(self.config)
        self.catalog = catalog or _catalog_with(self.config)
        routing = self.config.routing
        self.health = health or HealthBook(
            BreakerPolicy(routing.failure_threshold, routing.cooldown_s)
        )
        self.backends: dict[str, Backend] = {}
        for entry in self.config.backends:
            if entry.enabled:
                given = (backends or {}).get(entry.name)
                self.backends[entry.name] = given or build_backend(entry)
        unknown = set(backends or {}) - set(self.backends)
        if unknown:
            raise ConfigurationError(
                f"backends= names {sorted(unknown)} that are not enabled in the config"
            )
        self._networks = {e.name: e.label for e in self.config.backends if e.enabled}
        self.verification = LevelRunner(self.config, self.health)
        self._offers = self._offers_from_config()
        self._configured_offers = self._offers
        self.prices = PriceBook(self.backends, self.config.backends, self.catalog)
        self._executor = Executor(self.backends, self.health, self._retry_policies())
        self._index = RouteIndex(self.health)
        self._offers_version, self._offers_at = -1, -math.inf
        self._cache = ResponseCache(routing.cache_size, routing.cache_ttl_s)
        self._ledger_arg = ledger
        self._ledger_obj: Ledger | None = ledger if _is_ledger(ledger) else None  # type: ignore[assignment]
        self._key = signing_key
        self._writer: ReceiptWriter | None = None
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
        upper, expected = estimate_prompt_tokens(intent.chat_messages())
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
        started = time.perf_counter()
        await self._update_prices()
        key = self._cache.key_for(intent, self.catalog) if intent.cache else None
        if key is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return await self._from_cache(intent, hit, started)
        call = self._call(intent)
        outcome = await self.verification.complete(self._executor, intent, call)
        result = await self._finish(intent, call, outcome, started)
        if key is not None:
            self._cache.put(key, result)
        return result

    def astream(self, intent: Intent | None = None, **fields: Any) -> ResultStream:
        """Stream the answer: ``async for chunk in gw.astream(i)``; ``.result`` at the end."""
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
            path = arg or self.config.receipts.ledger or default_ledger_path()
            self._ledger_obj = Ledger(Path(str(path)).expanduser())
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
            self.health.record_failure(name, result.get("error_kind", "unavailable"),
                                       result.get("error", ""))
        return result

    # -- lifecycle --------------------------------------------------------------------

    async def aclose(self) -> None:
        await self.prices.aclose()
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
                    )
                )
        return offers

    def _retry_policies(self) -> dict[str, RetryPolicy]:
        r = self.config.routing
        return {
            e.name: RetryPolicy(e.retries, r.backoff_s, r.backoff_max_s, r.max_retry_after_s)
            for e in self.config.backends
        }

    def _route(self, intent: Intent) -> Plan:
        """The plan a call runs: the head of the pre-ranked index for ``none``/``receipt``
        (time independent of the number of backends); the full solve for other levels, and
        when nothing is feasible (so that the error names every reason)."""
        request = self.route_request(intent)
        if intent.verifiability in _INDEXED_LEVELS:
            head = self._index.head(request, self._offers)
            if head:
                return Plan(request.models, head, (), request)
        plan = solve(request, self._offers, self.health, self._networks)
        return self.verification.shape_plan(intent, plan)

    def _call(self, intent: Intent) -> Call:
        """Plan, and raise NoRouteError with every reason when nothing is feasible."""
        plan = self._route(intent)
        if not plan.candidates:
            raise NoRouteError(" or ".join(intent.models), plan.rejections, self._hint(plan))
        messages = intent.chat_messages()
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
            plan, build, Budget(intent.max_price_usd), deadline, self._hedge_delay(intent, plan)
        )

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

    async def _finish(
        self, intent: Intent, call: Call, outcome: Outcome, started: float
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
        )
        return await self._with_receipt(intent, result, call)

    async def _with_receipt(
        self, intent: Intent, result: InferenceResult, call: Call | None
    ) -> InferenceResult:
        if intent.verifiability == "none" or not self.config.receipts.enabled:
            return result
        receipt = await self._issue_receipt(intent, result, call)
        return replace(result, receipt=receipt)

    async def _issue_receipt(
        self, intent: Intent, result: InferenceResult, call: Call | None
    ) -> Receipt:
        """Signed and stored on the receipt writer's thread; committed before it returns
        unless ``[receipts] commit = "async"`` (docs/receipts.md)."""
        from intentmesh.receipts._body import receipt_fields

        backend = self.backends.get(result.backend)
        host = str(getattr(backend, "endpoint_host", "") or "")
        fields = receipt_fields(intent, result, host)
        fields.update(self.verification.receipt_fields(result))
        writer = self._receipt_writer()
        if writer is None:  # a ledger-like object of the caller's: its own append, inline
            return self.ledger.append(fields, self.signing_key)
        return await writer.asubmit(fields)

    def _receipt_writer(self) -> ReceiptWriter | None:
        if self._writer is None:
            from intentmesh.receipts import Ledger
            from intentmesh.receipts._writer import ReceiptWriter

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

    After the last chunk, ``result`` holds the :class:`InferenceResult` with usage, cost and
    receipt. Streams fail over freely before the first token; after it, a failure raises
    :class:`~intentmesh.errors.MidStreamError` with the text already delivered.
    """

    def __init__(self, gateway: Gateway, intent: Intent) -> None:
        self._gateway = gateway
        self._intent = intent
        self.result: InferenceResult | None = None

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._run()

    def __iter__(self) -> Iterator[Chunk]:
        return self._gateway._portal.iterate(self._run())

    @property
    def text(self) -> str:
        return self.result.text if self.result is not None else ""

    async def _run(self) -> AsyncIterator[Chunk]:
        gw, intent = self._gateway, self._intent
        started = time.perf_counter()
        await gw._update_prices()
        if gw.verification.buffers(intent):  # verified whole before any of it is shown
            self.result = await gw.ainfer(intent)
            yield Chunk(text=self.result.text, finish_reason=self.result.finish_reason)
            yield Chunk(usage=self.result.usage, model=self.result.provider_model)
            return
        call = gw._call(intent)
        run = gw._executor.stream(call)
        async for chunk in run:
            yield chunk
        assert run.outcome is not None
        self.result = await gw._finish(intent, call, run.outcome, started)


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


def _is_ledger(value: object) -> bool:
    return hasattr(value, "append") and hasattr(value, "verify")
