"""A tiny OpenAI-compatible completions server on 127.0.0.1, in-process, for the unit tier.

It answers ``/v1/completions`` requests made of ``prompt_embeds`` (base64 of ``torch.save``
of a (T, H) tensor) with a local torch language model, so its tokens can be compared with the
local decoder's, streaming one server-sent event per token as vLLM does (then a finish chunk,
a usage chunk and ``data: [DONE]``). ``mode`` makes it misbehave on purpose:

* ``ok``: a correct server; ``slow``: waits ``delay_s`` before the first byte of each event;
* ``garbage``: 200 with a body that is not an event stream; ``bad_json``: events not JSON;
* ``die``: closes the socket after ``die_after`` tokens, without a finish (a killed server);
* ``http_error``: 500 with an OpenAI-style error body; ``error_event``: an error mid-stream.

``tls`` (an ``ssl.SSLContext`` with the server's certificate) makes it an https server.
``stop()`` then a request is a server that is down (connection refused). It records every
request (headers and JSON body) and, for cancels, whether the client went away mid-answer.
"""

from __future__ import annotations

import base64
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import io
import json
import ssl
import threading
import time
from typing import Any

import torch

from flash_vstream_ros.models.base import GenerationRequest
from flash_vstream_ros.models.generate import generate

MODEL_NAME = 'tiny-lm'


class FakeOpenAI:
    """``with FakeOpenAI(lm, tokenizer) as fake: fake.url``."""

    def __init__(
        self,
        lm: Any,
        tokenizer: Any,
        mode: str = 'ok',
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.lm, self.tokenizer, self.mode = lm, tokenizer, mode
        self.delay_s = 0.0
        self.token_delay_s = 0.0
        self.die_after = 2
        self.requests: list[dict[str, Any]] = []
        self.client_gone = threading.Event()  # a write failed: the client closed the stream
        self.tokens_sent = 0
        self.api_key: str | None = None  # when set, requests need this Bearer key
        self._server = ThreadingHTTPServer(('127.0.0.1', port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f'http://127.0.0.1:{self.port}'
        if tls is not None:  # https: the listening socket hands out TLS connections
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.url = f'https://127.0.0.1:{self.port}'
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ answering

    def answer(self, body: dict[str, Any], emit: Any) -> tuple[int, str]:
        """Generate from the body's prompt embeddings; emit(text) per token -> (tokens, reason)."""
        raw = base64.b64decode(body['prompt_embeds'])
        embeds = torch.load(io.BytesIO(raw), weights_only=True)  # (T, H)
        eos = set() if body.get('ignore_eos') else set(body.get('stop_token_ids') or [])
        request = GenerationRequest(
            max_new_tokens=int(body['max_tokens']),
            temperature=float(body.get('temperature', 0.0)),
            top_p=float(body.get('top_p', 1.0)),
        )
        first = [True]

        def on_token(piece: str, _tokens: int) -> None:
            # TextStream drops the answer's leading spaces; a real server sends them: put one
            # back on the first piece so the client has to strip it as it does for vLLM.
            emit((' ' if first[0] else '') + piece)
            first[0] = False

        gen = generate(
            self.lm,
            embeds.to(self.lm.dtype).unsqueeze(0),  # (1, T, H)
            self.tokenizer,
            eos,
            request,
            on_token,
            lambda: self.client_gone.is_set(),
        )
        return gen.tokens, {'eos': 'stop', 'length': 'length'}.get(gen.stop_reason, 'abort')


def _chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        'id': 'cmpl-fake',
        'object': 'text_completion',
        'model': MODEL_NAME,
        'choices': [{'index': 0, 'text': text, 'finish_reason': finish}],
    }


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *args: Any) -> None:
            """Quiet."""

        def _json(self, status: int, data: Any) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _authorised(self) -> bool:
            if fake.api_key is None:
                return True
            if self.headers.get('Authorization') == f'Bearer {fake.api_key}':
                return True
            self._json(401, {'error': {'message': 'invalid API key', 'code': 401}})
            return False

        def do_GET(self) -> None:
            fake.requests.append({'path': self.path, 'headers': dict(self.headers)})
            if not self._authorised():
                return
            if self.path == '/v1/models':
                self._json(200, {'object': 'list', 'data': [{'id': MODEL_NAME}]})
            else:
                self._json(404, {'detail': 'Not Found'})

        def do_POST(self) -> None:
            length = int(self.headers.get('Content-Length', '0'))
            body = json.loads(self.rfile.read(length))
            fake.requests.append({'path': self.path, 'headers': dict(self.headers), 'body': body})
            if not self._authorised():
                return
            if fake.mode == 'http_error':
                self._json(500, {'error': {'message': 'engine dead', 'type': 'InternalError'}})
                return
            self.send_response(200)
            if fake.mode == 'garbage':
                self.send_header('Content-Type', 'text/event-stream')
                self.send_header('Connection', 'close')
                self.end_headers()
                self.wfile.write(b'\x00\x01 this is not an event stream\n\n')
                return
            self.send_header('Content-Type', 'text/event-stream')
            self.send_header('Connection', 'close')
            self.end_headers()
            self._stream(body)

        def _send(self, data: Any) -> None:
            if fake.mode == 'slow':
                time.sleep(fake.delay_s)
            if fake.token_delay_s:
                time.sleep(fake.token_delay_s)
            text = data if isinstance(data, str) else json.dumps(data)
            try:
                self.wfile.write(f'data: {text}\n\n'.encode())
                self.wfile.flush()
            except OSError:
                fake.client_gone.set()

        def _stream(self, body: dict[str, Any]) -> None:
            if fake.mode == 'bad_json':
                self._send('{not json')
                return
            if fake.mode == 'error_event':
                self._send(_chunk('Hel'))
                self._send({'error': {'message': 'out of KV cache', 'code': 500}})
                return
            sent = [0]

            def emit(piece: str) -> None:
                if fake.mode == 'die' and sent[0] >= fake.die_after:
                    self.connection.shutdown(2)  # the server is gone: no finish, no [DONE]
                    fake.client_gone.set()  # stop generating
                    return
                self._send(_chunk(piece))
                sent[0] += 1
                fake.tokens_sent += 1

            tokens, finish = fake.answer(body, emit)
            if fake.client_gone.is_set():
                return
            self._send(_chunk('', finish))
            if (body.get('stream_options') or {}).get('include_usage'):
                usage = {'prompt_tokens': 0, 'completion_tokens': tokens, 'total_tokens': tokens}
                self._send({'id': 'cmpl-fake', 'choices': [], 'usage': usage})
            self._send('[DONE]')

    return Handler
