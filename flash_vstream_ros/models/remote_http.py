"""A small HTTP client for an OpenAI-compatible server: JSON requests and server-sent events.

Standard library only (``http.client``, ``ssl``): the robot needs no HTTP package for it.
Every failure is a :class:`RemoteError` (a ModelError) whose message says what happened and
where: connection refused, connect or read timeout, an HTTP error status with the server's
own message, a body that is not JSON or not an event stream, a stream cut off mid-answer.
:meth:`EventStream.abort` may be called from another thread: it shuts the socket down, so a
read blocked on a silent server returns at once (how a cancel closes the stream).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import http.client
import json
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from flash_vstream_ros.errors import ModelError

MAX_LINE = 1 << 20  # longest event line accepted (a completion chunk is a few hundred bytes)
MAX_ERROR_BODY = 64 << 10  # bytes of an error body read for its message


class RemoteError(ModelError):
    """The answering server could not be reached or gave no usable answer."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the server. ``api_key`` never shows in repr or messages."""

    url: str  # base URL: scheme://host[:port][/prefix], without /v1
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    ca_file: str = ''
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, **kwargs: Any) -> Endpoint:
        """Accepts ``http://host:8000``, ``.../v1`` and trailing slashes."""
        base = url.rstrip('/')
        if base.endswith('/v1'):
            base = base[: -len('/v1')]
        parts = urlsplit(base)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise RemoteError(f'not an http(s) URL: {url!r}')
        return cls(url=base, **kwargs)

    @property
    def https(self) -> bool:
        return self.url.startswith('https:')

    def path(self, tail: str) -> str:
        """``/v1/completions`` under the URL's own prefix (a reverse proxy's path)."""
        return urlsplit(self.url).path.rstrip('/') + tail

    def headers(self, accept: str = 'application/json') -> dict[str, str]:
        out = {'Content-Type': 'application/json', 'Accept': accept}
        if self.api_key:
            out['Authorization'] = f'Bearer {self.api_key}'
        return out


def _connect(endpoint: Endpoint) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint.url)
    host, port = parts.hostname or '', parts.port
    conn: http.client.HTTPConnection
    if endpoint.https:
        try:
            context = ssl.create_default_context(cafile=endpoint.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise RemoteError(f'cannot read the CA file {endpoint.ca_file!r}: {exc}') from exc
        conn = http.client.HTTPSConnection(
            host, port, timeout=endpoint.connect_timeout_s, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=endpoint.connect_timeout_s)
    try:
        conn.connect()
    except ssl.SSLError as exc:
        conn.close()
        raise RemoteError(f'TLS handshake with {endpoint.url} failed: {exc}') from exc
    except TimeoutError as exc:
        conn.close()
        raise RemoteError(
            f'cannot connect to {endpoint.url} within {endpoint.connect_timeout_s:g} s'
        ) from exc
    except OSError as exc:
        conn.close()
        raise RemoteError(
            f'cannot connect to {endpoint.url}: {exc.strerror or exc} (is the server up?)'
        ) from exc
    assert conn.sock is not None
    conn.sock.settimeout(endpoint.read_timeout_s)
    return conn


def _error_message(status: int, reason: str, body: bytes) -> str:
    """The server's own message out of an error body (OpenAI and FastAPI shapes), shortened."""
    text = body.decode('utf-8', 'replace').strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get('error', data.get('detail', data.get('message')))
        if isinstance(err, dict):
            err = err.get('message', err)
        if err is not None:
            text = str(err)
    return f'HTTP {status} {reason}: {text[:500]}'


def _request(
    endpoint: Endpoint, method: str, path: str, body: bytes | None, accept: str
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, socket.socket]:
    """Connect, send, read the status line; an error status becomes a RemoteError.

    Also returns the socket: a response that ends with the connection takes it over and the
    connection forgets it (``conn.sock`` is then None), but an abort must still reach it.
    """
    conn = _connect(endpoint)
    sock = conn.sock
    assert sock is not None
    try:
        conn.request(method, endpoint.path(path), body=body, headers=endpoint.headers(accept))
        response = conn.getresponse()
    except BaseException as exc:
        conn.close()
        raise _transport_error(endpoint, exc) from exc
    if response.status != 200:
        try:
            raw = response.read(MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException):
            raw = b''
        conn.close()
        raise RemoteError(
            f'{endpoint.url}{path}: {_error_message(response.status, response.reason, raw)}'
        )
    return conn, response, sock


def _transport_error(endpoint: Endpoint, exc: BaseException) -> BaseException:
    if isinstance(exc, RemoteError) or not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt and friends go through as they are
    if isinstance(exc, TimeoutError):
        return RemoteError(
            f'{endpoint.url} sent nothing for {endpoint.read_timeout_s:g} s (timeout_s)'
        )
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        return RemoteError(f'{endpoint.url} closed the connection: {type(exc).__name__}: {exc}')
    if isinstance(exc, OSError):
        return RemoteError(f'connection to {endpoint.url} failed: {exc}')
    return exc


def get_json(endpoint: Endpoint, path: str) -> Any:
    """GET ``path`` -> the parsed JSON body."""
    conn, response, _ = _request(endpoint, 'GET', path, None, 'application/json')
    try:
        raw = response.read()
    except Exception as exc:
        raise _transport_error(endpoint, exc) from exc
    finally:
        conn.close()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RemoteError(f'{endpoint.url}{path} did not answer JSON: {raw[:200]!r}') from exc


class EventStream:
    """POST a JSON body and iterate the server-sent events of the answer (parsed JSON)."""

    def __init__(self, endpoint: Endpoint, path: str, payload: dict[str, Any]) -> None:
        self.endpoint, self.path = endpoint, path
        self.bytes_sent = 0
        self._aborted = threading.Event()
        body = json.dumps(payload).encode()
        self.bytes_sent = len(body)
        self._conn, self._response, self._sock = _request(
            endpoint, 'POST', path, body, 'text/event-stream'
        )
        kind = self._response.getheader('Content-Type', '')
        if not kind.startswith('text/event-stream'):
            head = self._response.read(200)
            self.close()
            raise RemoteError(
                f'{endpoint.url}{path} answered {kind or "no content type"}, '
                f'not an event stream: {head!r}'
            )

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def events(self) -> Iterator[dict[str, Any]]:
        """Each event's JSON object, until ``data: [DONE]``; RemoteError on anything else."""
        data: list[str] = []
        while True:
            line = self._readline()
            if line is None:  # end of the body without [DONE]
                raise RemoteError(
                    f'{self.endpoint.url} ended the stream before the answer was complete'
                )
            if line == '':  # an empty line ends an event
                if data:
                    payload = '\n'.join(data)
                    data = []
                    if payload.strip() == '[DONE]':
                        return
                    yield self._parse(payload)
                continue
            name, sep, value = line.partition(':')
            if not sep:
                raise RemoteError(
                    f'{self.endpoint.url} sent a line that is not a server-sent event: '
                    f'{line[:120]!r}'
                )
            if name == 'data':
                data.append(value[1:] if value.startswith(' ') else value)
            # comments (':...'), event:, id: and retry: lines carry nothing we need

    def _readline(self) -> str | None:
        try:
            raw = self._response.readline(MAX_LINE + 1)
        except Exception as exc:
            if self.aborted:
                return None
            raise _transport_error(self.endpoint, exc) from exc
        if not raw:
            return None
        if len(raw) > MAX_LINE:
            raise RemoteError(f'{self.endpoint.url} sent an event line over {MAX_LINE} bytes')
        try:
            return raw.decode('utf-8').rstrip('\r\n')
        except UnicodeDecodeError as exc:
            raise RemoteError(f'{self.endpoint.url} sent bytes that are not UTF-8') from exc

    def _parse(self, payload: str) -> dict[str, Any]:
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise RemoteError(
                f'{self.endpoint.url} sent an event that is not JSON: {payload[:120]!r}'
            ) from exc
        if not isinstance(event, dict):
            raise RemoteError(f'{self.endpoint.url} sent an event that is not an object')
        if 'error' in event:
            err = event['error']
            message = err.get('message', err) if isinstance(err, dict) else err
            raise RemoteError(f'{self.endpoint.url} failed mid-answer: {message}')
        return event

    def abort(self) -> None:
        """Stop reading now (any thread): shuts the socket down, then closes it."""
        self._aborted.set()
        with contextlib.suppress(OSError):  # already closed
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._response.close()
        self._conn.close()
        self._sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
