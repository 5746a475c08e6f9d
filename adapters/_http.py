"""HTTP plumbing shared by adapters: one client per event loop, and the one error boundary."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email.utils
import functools
import json
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Generic, TypeVar

import httpx

from intentmesh.adapters.base import cut_off_by_caller
from intentmesh.errors import (
    AuthenticationError,
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    InvalidRequest,
    MalformedResponse,
    ModelNotFound,
    PaymentRequired,
    RateLimited,
)

__all__ = [
    "REDACTED",
    "Connection",
    "MAX_BODY_BYTES_PER_TOKEN",
    "MIN_BODY_BYTES",
    "Secrets",
    "add_secrets",
    "dumps_json",
    "error_for_status",
    "error_message",
    "hard_timeout",
    "iter_sse_data",
    "loads_json",
    "map_transport_errors",
    "parse_retry_after",
    "read_limited",
    "redact",
    "StreamTruncated",
]

# A non-streamed body is read up to max_tokens * MAX_BODY_BYTES_PER_TOKEN + MIN_BODY_BYTES
# bytes (JSON escapes and metadata included); more than that is cut, not read.
MAX_BODY_BYTES_PER_TOKEN = 256
MIN_BODY_BYTES = 256 * 1024
_LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=30)
REDACTED = "[REDACTED]"
_MIN_SECRET = 8  # shorter values would blank out ordinary words (real keys are longer)
# Header names whose values are credentials (matched as substrings of the lower-cased name).
_CREDENTIAL_HEADERS = ("auth", "key", "token", "secret", "cookie", "signature")


class Secrets:
    """The secret values configured in this process (upstream API keys, gateway keys, signer
    seeds), to be cut out of everything derived from an upstream's answer.

    An upstream may echo a key back (a 401 body quoting the ``Authorization`` header); its
    text reaches error messages, attempts, logs, health snapshots and ``/health``, so it is
    redacted once, where upstream errors are translated (:func:`error_for_status`,
    :func:`error_message`, :func:`map_transport_errors`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()

    def add(self, values: Iterable[str | None]) -> None:
        """Remember ``values`` (and their JSON-escaped forms); empty and tiny ones are ignored."""
        forms = set(self._forms)
        for value in values:
            for line in _secret_parts(value or ""):
                forms.update({line, json.dumps(line)[1:-1]})
        with self._lock:
            self._forms = tuple(sorted(forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``[REDACTED]``."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


def _secret_parts(value: str) -> set[str]:
    """The value, and for ``Bearer <token>`` or a PEM block the token or each long line."""
    value = value.strip()
    if len(value) < _MIN_SECRET:
        return set()
    scheme, _, token = value.partition(" ")
    if token and scheme.isalpha() and "\n" not in value:
        return _secret_parts(token)  # "Bearer <token>": the token is the secret
    return {value} | {line.strip() for line in value.splitlines() if len(line.strip()) >= 16}


SECRETS = Secrets()
"""Process-wide, as the environment the secrets come from is."""


def add_secrets(*values: str | None) -> None:
    """Redact these values from everything derived from upstream answers (see :class:`Secrets`)."""
    SECRETS.add(values)


def redact(text: str) -> str:
    """``text`` without any configured secret value."""
    return SECRETS.redact(text)


class Connection:
    """Base URL, credentials and an ``httpx.AsyncClient`` per running event loop.

    Sync callers run on the gateway's own loop and async callers on theirs; connection pools
    cannot cross loops, so each loop gets its own client, closed with :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = httpx.URL(self.base_url).host
        self.headers = dict(headers)
        add_secrets(*(v for k, v in self.headers.items() if _is_credential(k)))
        self.timeout_s = timeout_s
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._guards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]
        self._guards = weakref.WeakKeyDictionary()
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]
        self._sessions = weakref.WeakKeyDictionary()
        self._session_guards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]
        self._session_guards = weakref.WeakKeyDictionary()
        self._urls: dict[str, Any] = {}
        self._default_aio_timeout: Any = None
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]
        self._pools = weakref.WeakKeyDictionary()
        self._pool_guards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]
        self._pool_guards = weakref.WeakKeyDictionary()
        self._origin: Any = None  # the lean client's Origin; False where it does not apply

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None or found.is_closed:
            found = httpx.AsyncClient(
                headers=self.headers,
                timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
                limits=_LIMITS,
                transport=self._transport or default_transport(),
                trust_env=False,
            )
            self._clients[loop] = found
            self._guards[loop] = _close_with_loop(loop, found)
        return found

    def timeout(self, seconds: float | None) -> httpx.Timeout:
        total = self.timeout_s if seconds is None else max(0.001, min(seconds, self.timeout_s))
        return httpx.Timeout(total, connect=min(total, 10.0))

    def _native(self) -> Any:
        """This loop's ``aiohttp.ClientSession``, or None when httpx is the transport."""
        if self._transport is not None:
            return None
        loop = asyncio.get_running_loop()
        found = self._sessions.get(loop)
        if found is None or found.closed:
            if not _native_enabled():  # read when a session would open, not on every call
                return None
            import aiohttp

            connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=30)
            found = aiohttp.ClientSession(
                headers=self.headers, connector=connector, trust_env=False
            )
            self._sessions[loop] = found
            self._session_guards[loop] = _close_with_loop(loop, found)
        return found

    def _lean(self) -> Any:
        """This loop's :class:`~intentmesh.adapters._h1.H1Pool`, or None where the lean client
        does not apply (a transport of the caller's, another client asked for, no httptools,
        a base URL it does not take)."""
        if self._transport is not None:
            return None
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None and not pool.closed:
            return pool
        origin = self._lean_origin()
        if origin is None:
            return None
        from intentmesh.adapters._h1 import H1Pool

        pool = self._pools[loop] = H1Pool(origin)
        self._pool_guards[loop] = _close_with_loop(loop, pool)
        return pool

    def _lean_origin(self) -> Any:
        if isinstance(self._origin, ConfigurationError):
            raise self._origin  # bad headers: every call says so, not only the first
        if self._origin is None:
            self._origin = False
            if _transport_choice() == "auto" and _h1_module() is not None:
                try:
                    self._origin = _h1_module().Origin(self.base_url, self.headers)
                except ValueError:  # a URL it does not take: aiohttp sends those
                    pass
                except ConfigurationError as exc:
                    self._origin = exc
                    raise
        return self._origin or None

    def _aio_timeout(self, seconds: float | None) -> Any:
        import aiohttp

        if seconds is None and self._default_aio_timeout is not None:
            return self._default_aio_timeout
        total = self.timeout_s if seconds is None else max(0.001, min(seconds, self.timeout_s))
        made = aiohttp.ClientTimeout(sock_connect=min(total, 10.0), sock_read=total)
        if seconds is None:
            self._default_aio_timeout = made
        return made

    def url(self, path: str) -> str:
        """``path`` under the base URL; an absolute ``http(s)://`` URL is used as it is."""
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    # The one place a request is sent and its status becomes an error (error_for_status);
    # transport failures are translated on the way (map_transport_errors).

    async def send(
        self,
        method: str,
        path: str,
        *,
        backend: str,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """One request (``body`` sent as JSON; bytes as they are), its answer read whole;
        4xx/5xx raise."""
        if isinstance(body, bytes):
            content: bytes | None = body
        else:
            content = json.dumps(body).encode() if body is not None else None
        with map_transport_errors(backend):
            response = await self.client().request(
                method,
                self.url(path),
                content=content,
                params=params,
                timeout=self.timeout(timeout_s),
            )
            if response.status_code >= 400:
                raise _status_error(response, response.text, backend)
        return response

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        backend: str,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """:meth:`send`, then the answer's JSON (undecodable: :class:`MalformedResponse`)."""
        response = await self.send(
            method, path, backend=backend, body=body, params=params, timeout_s=timeout_s
        )
        with map_transport_errors(backend):
            return response.json()

    async def get_json(
        self, path: str, *, backend: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        """``GET path`` and its JSON answer."""
        return await self.request_json("GET", path, backend=backend, params=params)

    async def post_json(
        self, path: str, body: Any, *, backend: str, timeout_s: float | None = None
    ) -> Any:
        """``POST path`` with a JSON ``body``, and its JSON answer."""
        return await self.request_json(
            "POST", path, backend=backend, body=body, timeout_s=timeout_s
        )

    async def post_limited(
        self,
        path: str,
        body: Any,
        *,
        backend: str,
        limit: int,
        timeout_s: float | None = None,
    ) -> tuple[bytes, Mapping[str, str]]:
        """``POST path`` with a JSON ``body``; the answer's bytes (at most ``limit``, else
        :class:`MalformedResponse`) and headers. ``timeout_s`` bounds the whole exchange, not
        each read (:func:`hard_timeout`); 4xx/5xx raise, and so does a 3xx on the lean client.

        Sent by the lean HTTP/1.1 client (``adapters/_h1.py``) by default: a fifth of an
        aiohttp request's CPU (docs/benchmarks.md). ``INTENTMESH_HTTP_TRANSPORT=aiohttp`` sends
        it on an aiohttp session (session, parsed URL and timeouts made once per connection and
        loop), as does a base URL the lean client does not take. A ``transport=`` of your own
        (or ``INTENTMESH_HTTP_TRANSPORT=httpx``) keeps httpx."""
        pool = self._lean()
        head = pool.origin.request_line(path) if pool is not None else None
        if head is not None:
            return await self._post_lean(pool, head, body, backend, limit, timeout_s)
        session = self._native()
        if session is not None:
            return await self._post_native(session, path, body, backend, limit, timeout_s)
        with map_transport_errors(backend):
            async with (
                hard_timeout(timeout_s or self.timeout_s, backend),
                self.client().stream(
                    "POST",
                    self.url(path),
                    content=dumps_json(body),
                    timeout=self.timeout(timeout_s),
                ) as response,
            ):
                raw = await read_limited(response, limit, backend)
            if response.status_code >= 400:
                raise _status_error(response, raw.decode("utf-8", "replace"), backend)
        return raw, response.headers

    async def _post_lean(
        self, pool: Any, head: bytes, body: Any, backend: str, limit: int, timeout_s: float | None
    ) -> tuple[bytes, Mapping[str, str]]:
        payload = dumps_json(body)
        seconds = timeout_s or self.timeout_s
        try:
            # where the executor's timer fires first, a second one would only cost time
            timer = (
                contextlib.nullcontext() if cut_off_by_caller(seconds) else asyncio.timeout(seconds)
            )
            async with timer:
                status, headers, raw = await pool.post(head, payload, limit, backend)
        except TimeoutError:
            raise _exchange_timeout(seconds, backend) from None
        if status >= 300:  # a redirect is never followed: the POST would be sent again
            raise error_for_status(status, raw.decode("utf-8", "replace"), headers, backend)
        return raw, headers

    async def _post_native(
        self, session: Any, path: str, body: Any, backend: str, limit: int, timeout_s: float | None
    ) -> tuple[bytes, Mapping[str, str]]:
        target = self._urls.get(path)
        if target is None:
            target = self._urls[path] = _yarl_url(self.url(path))
        payload = dumps_json(body)
        seconds = timeout_s or self.timeout_s
        # One asyncio timeout bounds the whole exchange (what hard_timeout does, without a
        # generator-based context manager on the hot path); aiohttp's own per-read limits
        # stay the connection's defaults, made once.
        with map_transport_errors(backend):
            try:
                async with (
                    asyncio.timeout(seconds),
                    session.post(target, data=payload, timeout=self._aio_timeout(None)) as resp,
                ):
                    raw = await _read_capped(resp.content, limit, backend)
            except TimeoutError:
                raise _exchange_timeout(seconds, backend) from None
            if resp.status >= 400:
                text = raw.decode("utf-8", "replace")
                raise error_for_status(resp.status, text, resp.headers, backend)
        return raw, resp.headers

    def stream(
        self, path: str, body: Any, *, backend: str, timeout_s: float | None = None
    ) -> _OpenStream[httpx.Response]:
        """``POST path`` with a JSON ``body``, the answer open for reading as it arrives."""
        return _OpenStream(self, path, body, backend, timeout_s, _as_is)

    def stream_sse(
        self, path: str, body: Any, *, backend: str, timeout_s: float | None = None
    ) -> _OpenStream[AsyncIterator[str]]:
        """:meth:`stream`, read as server-sent events: the payload of each ``data:`` event."""
        return _OpenStream(
            self, path, body, backend, timeout_s, lambda r: iter_sse_data(r, backend)
        )

    async def aclose(self) -> None:
        """Close the client of the running loop (others close with their loops)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.close()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()


V = TypeVar("V")


def _as_is(response: httpx.Response) -> httpx.Response:
    return response


class _OpenStream(Generic[V]):
    """``async with`` an answer read as it arrives (:meth:`Connection.stream`).

    A class rather than a generator-based context manager: a stream left open until the
    interpreter exits is closed by the event loop, which closes generators in no set order,
    and a generator-based manager whose inner generator was closed first fails with
    "generator didn't stop after athrow()". Transport errors raised while reading are
    translated by the caller's :func:`map_transport_errors`.
    """

    def __init__(
        self,
        conn: Connection,
        path: str,
        body: Any,
        backend: str,
        timeout_s: float | None,
        view: Callable[[httpx.Response], V],
    ) -> None:
        self._conn, self._path, self._body = conn, path, body
        self._backend, self._timeout_s, self._view = backend, timeout_s, view
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> V:
        conn, backend = self._conn, self._backend
        with map_transport_errors(backend):
            client = conn.client()
            request = client.build_request(
                "POST",
                conn.url(self._path),
                content=dumps_json(self._body),
                timeout=conn.timeout(self._timeout_s),
            )
            response = self._response = await client.send(request, stream=True)
            if response.status_code >= 300:  # redirects are not followed (httpx's default)
                try:
                    text = (await response.aread()).decode("utf-8", "replace")
                finally:
                    await response.aclose()
                raise _status_error(response, text, backend)
        return self._view(response)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            await self._response.aclose()


def _status_error(response: httpx.Response, text: str, backend: str) -> BackendError:
    return error_for_status(response.status_code, text, response.headers, backend)


def _is_credential(header: str) -> bool:
    name = header.lower()
    return any(word in name for word in _CREDENTIAL_HEADERS)


def _close_with_loop(loop: asyncio.AbstractEventLoop, client: Any) -> object:
    """Close ``client`` when its loop shuts down, even if nobody called ``aclose``.

    An async generator suspended at its ``yield`` is closed by the loop's
    ``shutdown_asyncgens()`` (``asyncio.run`` calls it), which runs its ``finally``. A loop
    that is never shut down (``run_until_complete`` and no ``close``) sits idle at exit:
    :func:`_close_idle_clients` closes the client then.
    """
    _IDLE_AT_EXIT[client] = weakref.ref(loop)
    _close_idle_at_exit()

    async def guard() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await _close_client(client)

    gen = guard()
    task = loop.create_task(_advance(gen))
    return gen, task


def _client_closed(client: Any) -> bool:
    """Whether an httpx client or an aiohttp session is closed."""
    return bool(client.is_closed if isinstance(client, httpx.AsyncClient) else client.closed)


async def _close_client(client: Any) -> None:
    if _client_closed(client):
        return
    if isinstance(client, httpx.AsyncClient):
        await client.aclose()
    else:  # an aiohttp session
        await client.close()


async def _advance(gen: AsyncIterator[None]) -> None:
    await gen.__anext__()


_IDLE_AT_EXIT: weakref.WeakKeyDictionary[
    httpx.AsyncClient, weakref.ref[asyncio.AbstractEventLoop]
] = weakref.WeakKeyDictionary()


@functools.cache
def _close_idle_at_exit() -> None:
    atexit.register(_close_idle_clients)


def _close_idle_clients() -> None:
    """At exit: close clients whose loop is still open but no longer running (a loop that
    is running, such as the gateway's own, closes its clients itself)."""
    for client, loop_ref in list(_IDLE_AT_EXIT.items()):
        loop = loop_ref()
        if loop is None or loop.is_closed() or loop.is_running() or _client_closed(client):
            continue
        with contextlib.suppress(Exception):
            loop.run_until_complete(_close_client(client))


def default_transport() -> httpx.AsyncBaseTransport | None:
    """aiohttp under the httpx API when installed: httpcore's pool costs ~2 ms of CPU per
    request at 64+ concurrent requests, aiohttp's ~0.3 ms (docs/benchmarks.md).
    ``INTENTMESH_HTTP_TRANSPORT=httpx`` keeps httpx's own transport."""
    if _transport_choice() == "httpx":
        return None
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        return None
    return AiohttpTransport(limits=_LIMITS, trust_env=False)


def _orjson_codec() -> tuple[Callable[[Any], Any], Callable[[Any], bytes]] | None:
    """orjson's ``loads``, and its ``dumps`` refusing datetimes, dataclasses and subclasses of
    str, int, dict and list, so they go to ``json`` as before. orjson has no such option for
    ``uuid.UUID`` and plain ``enum.Enum`` values: it writes them (the UUID's text, the enum's
    value) where ``json.dumps`` raised ``TypeError``."""
    try:
        import orjson
    except ImportError:  # orjson comes with the server extra
        return None
    plain = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    plain |= orjson.OPT_PASSTHROUGH_SUBCLASS
    return orjson.loads, functools.partial(orjson.dumps, option=plain)


_codec = _orjson_codec()
_orjson_loads, _orjson_dumps = _codec if _codec is not None else (None, None)


def dumps_json(body: Any) -> bytes:
    """A request body as JSON bytes: orjson's when installed and it writes the same values
    :func:`json.dumps` writes (or a UUID or plain enum, which ``json.dumps`` refuses), else
    ``json.dumps``'s.

    orjson writes NaN and Infinity as ``null`` (``json`` writes ``NaN``, which an upstream
    refuses, as it did before): output holding ``null`` anywhere, and anything orjson refuses
    (integers past 64 bits, lone surrogates), is encoded by ``json`` instead."""
    if _orjson_dumps is not None:
        try:
            payload = _orjson_dumps(body)
        except TypeError:
            pass
        else:
            if b"null" not in payload:
                return payload
    return json.dumps(body).encode()


def loads_json(data: bytes | str) -> Any:
    """An upstream's JSON: orjson when installed, else (and for what orjson refuses but the
    standard library takes: NaN, integers past 64 bits, lone surrogates) :func:`json.loads`.
    Raises :class:`ValueError` for what neither reads, as ``json.loads`` does."""
    if _orjson_loads is not None:
        try:
            return _orjson_loads(data)
        except ValueError:
            pass
    return json.loads(data)


def _transport_choice() -> str:
    """``INTENTMESH_HTTP_TRANSPORT``: ``auto`` (the default: the lean client for whole-body
    POSTs, aiohttp for the rest), ``aiohttp`` (no lean client) or ``httpx`` (httpx's own)."""
    value = os.environ.get("INTENTMESH_HTTP_TRANSPORT", "auto").strip().lower() or "auto"
    if value not in ("auto", "aiohttp", "httpx"):
        raise ConfigurationError(
            f"INTENTMESH_HTTP_TRANSPORT={value!r}: use 'auto' (the default), 'aiohttp' or 'httpx'"
        )
    return value


@functools.cache
def _h1_module() -> Any:
    """:mod:`intentmesh.adapters._h1`, or None without httptools."""
    try:
        from intentmesh.adapters import _h1
    except ImportError:
        return None
    return _h1


def _native_enabled() -> bool:
    """aiohttp is installed and ``INTENTMESH_HTTP_TRANSPORT`` does not ask for httpx."""
    if _transport_choice() == "httpx":
        return False
    return _aiohttp_errors() is not None


def _yarl_url(url: str) -> Any:
    from yarl import URL

    return URL(url)


async def _read_capped(content: Any, limit: int, backend: str) -> bytes:
    """An aiohttp body, or a :class:`MalformedResponse` once it grows past ``limit`` bytes."""
    return await _capped(content.iter_any(), limit, backend)


@functools.cache
def _aiohttp_errors() -> tuple[type[BaseException], type[BaseException]] | None:
    """aiohttp's (timeout, any client error) classes, or None when it is not installed."""
    try:
        import aiohttp
    except ImportError:
        return None
    return aiohttp.ServerTimeoutError, aiohttp.ClientError


def _timed_out(exc: BaseException) -> bool:
    """Classify by the aiohttp exception underneath when there is one: the bridge maps some
    refused connections to httpx timeouts."""
    classes = _aiohttp_errors()
    for inner in (exc, exc.__cause__):
        if classes is not None and isinstance(inner, classes[1]):
            return isinstance(inner, classes[0])
    return isinstance(exc, httpx.TimeoutException)


@contextmanager
def map_transport_errors(backend: str) -> Iterator[None]:
    """Translate transport exceptions into our error tree, the most specific class first."""
    try:
        yield
    except BackendError as exc:
        _redact_error(exc)
        raise
    except (httpx.DecodingError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = redact(str(exc))
        raise MalformedResponse(f"undecodable response: {detail}", backend=backend) from exc
    except Exception as exc:
        classes = _aiohttp_errors()
        if not isinstance(exc, httpx.TransportError) and not (
            classes is not None and isinstance(exc, classes[1])
        ):
            raise
        detail = redact(str(exc) or type(exc).__name__)
        if _timed_out(exc):
            raise BackendTimeout(f"timed out ({detail})", backend=backend) from exc
        raise BackendConnectionError(f"connection failed: {detail}", backend=backend) from exc


def _redact_error(exc: BackendError) -> None:
    """Cut any secret out of an error's message, body and headers (in place)."""
    exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
    exc.body = redact(exc.body)
    exc.headers = {k: redact(v) for k, v in exc.headers.items()}


@asynccontextmanager
async def hard_timeout(seconds: float | None, backend: str) -> AsyncIterator[None]:
    """A ceiling on a whole exchange (connect, headers, full body): httpx's own timeouts are
    per read, so an upstream trickling one byte at a time would never trip them."""
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise _exchange_timeout(seconds, backend) from None


def _exchange_timeout(seconds: float, backend: str) -> BackendTimeout:
    return BackendTimeout(f"no complete answer within timeout_s={seconds:.3g}", backend=backend)


async def read_limited(response: httpx.Response, limit: int, backend: str) -> bytes:
    """The body, or a :class:`MalformedResponse` once it grows past ``limit`` bytes."""
    return await _capped(response.aiter_bytes(), limit, backend)


async def _capped(parts_in: AsyncIterator[bytes], limit: int, backend: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for part in parts_in:
        size += len(part)
        if size > limit:
            raise MalformedResponse(
                f"response body passed {limit} bytes, more than max_tokens allows; cut",
                backend=backend,
            )
        parts.append(part)
    return b"".join(parts)


def error_message(body: Any) -> str:
    """The human message inside the many error body shapes providers use (secrets redacted)."""
    return redact(_error_message(body))


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            value = body.get(key)
            if isinstance(value, dict):
                return str(value.get("message") or value.get("detail") or value)
            if isinstance(value, list) and value:
                first = value[0]
                return str(first.get("msg", first) if isinstance(first, dict) else first)
            if value:
                return str(value)
        return json.dumps(body)[:300]
    return str(body)[:300]


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_for_status(
    status: int, body_text: str, headers: Mapping[str, str], backend: str
) -> BackendError:
    """The error class a status code means; the body's message is kept for people. A 3xx
    (redirects are never followed) is a :class:`BackendUnavailable` naming its ``Location``.

    Every configured secret is redacted from the body, its message and the headers.
    """
    body_text = redact(body_text)
    # As bytes: httpx would encode str values as ASCII and fail on any other character.
    headers = httpx.Headers(
        [
            (k.encode("latin-1", "replace"), redact(v).encode("utf-8", "surrogateescape"))
            for k, v in headers.items()
        ]
    )
    try:
        body: Any = json.loads(body_text) if body_text else ""
    except ValueError:
        body = body_text
    message = f"HTTP {status}: {error_message(body) or 'no details'}"
    kw: dict[str, Any] = {
        "backend": backend,
        "status_code": status,
        "body": body_text,
        "headers": headers,
    }
    if 300 <= status < 400:  # never followed: a redirected POST would be sent again
        where = headers.get("location") or "nowhere"
        where_to = f"HTTP {status}: the upstream redirects to {where}; set base_url to that"
        return BackendUnavailable(where_to, **kw)
    if status in (429, 529):
        return RateLimited(message, retry_after=parse_retry_after(headers), **kw)
    if status in (401, 403):
        return AuthenticationError(message, **kw)
    if status == 402:
        return PaymentRequired(message, **kw)
    if status == 404:
        return ModelNotFound(message, **kw)
    if status in (408, 409, 425) or status >= 500:
        cls = BackendTimeout if status in (408, 504) else BackendUnavailable
        return cls(message, **kw)
    return InvalidRequest(message, **kw)


async def iter_sse_data(response: httpx.Response, backend: str = "") -> AsyncIterator[str]:
    """Yield the payload of each ``data:`` event until ``[DONE]``; other fields are skipped."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        if payload:
            yield payload
    raise StreamTruncated("stream ended without [DONE] (truncated)", backend=backend)


class StreamTruncated(BackendConnectionError):
    """The SSE body ended without ``[DONE]``; complete only if a finish reason was seen."""
