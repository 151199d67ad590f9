"""A minimal client for OpenAI-compatible chat-completions endpoints: retries with backoff and a
deadline per attempt (a server that drips bytes cannot hold a request past ``timeout_s``).

Only the standard library: the judge must not need an SDK, and loopback servers (a local vLLM or
Ollama) are reached without the environment's proxy.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

_MAX_REPLY_BYTES = 16 * 2**20  # a chat completion is a few KB; more is a broken server


def post_chat(base_url: str, body: bytes, *, api_key: str | None = None, timeout_s: float = 60.0,
              max_retries: int = 4, backoff_s: float = 1.0, max_backoff_s: float = 30.0
              ) -> tuple[str | None, str | None, int]:
    """POST a chat-completions request body to ``{base_url}/chat/completions``.

    Returns ``(answer text, None, attempts)`` or ``(None, reason, attempts)``; never raises for
    what a server does. Each attempt has ``timeout_s`` in total; 408, 429, 5xx, timeouts and
    connection errors are retried ``max_retries`` times, the n-th retry after
    ``backoff_s * 2**(n-1)`` seconds (jittered, at most ``max_backoff_s``, at least a server's
    ``Retry-After``).
    """
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    opener = _opener(url)
    reason = "no attempt made"
    for attempt in range(max_retries + 1):
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            reply = _post_within(opener, request, timeout_s)
            return _message_text(json.loads(reply)), None, attempt + 1
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code} from {url}: {_error_body(e)}"
            if not (e.code in (408, 429) or e.code >= 500):
                return None, reason, attempt + 1
            wait_at_least = _retry_after(e.headers.get("Retry-After"))
        except (urllib.error.URLError, TimeoutError, ConnectionError,
                http.client.HTTPException) as e:
            reason = f"request to {url} failed: {getattr(e, 'reason', e)!s}"
            wait_at_least = 0.0
        except (ValueError, KeyError, IndexError, TypeError, RecursionError) as e:  # not a completion
            return None, f"malformed reply from {url}: {e!r}", attempt + 1
        if attempt < max_retries:
            delay = backoff_s * 2**attempt * random.uniform(0.5, 1.0)
            time.sleep(min(max_backoff_s, max(delay, wait_at_least)))
    return None, f"{reason} (gave up after {max_retries + 1} attempts)", max_retries + 1


def _post_within(opener: urllib.request.OpenerDirector, request: urllib.request.Request,
                 timeout_s: float) -> bytes:
    """The reply body of one attempt, all of it within ``timeout_s`` seconds, else ``TimeoutError``.

    A socket timeout bounds each read, not the exchange, so the attempt runs in a daemon thread
    that the caller waits for until the deadline; the thread itself stops reading the body at the
    deadline too (a server still dripping status or header bytes keeps only that thread).
    """
    deadline = time.monotonic() + timeout_s
    outcome: dict = {}

    def attempt() -> None:
        try:
            with opener.open(request, timeout=timeout_s) as response:
                chunks, size = [], 0
                while chunk := response.read1(65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _MAX_REPLY_BYTES:
                        raise ValueError(f"the reply is larger than {_MAX_REPLY_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"timed out: the reply took longer than {timeout_s} s")
                outcome["body"] = b"".join(chunks)
        except BaseException as e:  # handed to the caller, which sorts it out
            outcome["error"] = e

    worker = threading.Thread(target=attempt, name="judge-request", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"timed out: no complete reply within {timeout_s} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["body"]


def _message_text(reply: dict) -> str:
    content = reply["choices"][0]["message"]["content"]
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p["text"] for p in content
                          if isinstance(p, dict) and isinstance(p.get("text"), str))
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"the reply has no text content (finish_reason "
                         f"{reply['choices'][0].get('finish_reason')!r})")
    return content


def _opener(url: str) -> urllib.request.OpenerDirector:
    """An opener that bypasses proxies for loopback servers (a local vLLM or Ollama)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    handlers = [urllib.request.ProxyHandler({})] if loopback else []
    return urllib.request.build_opener(*handlers)


def _error_body(error: urllib.error.HTTPError) -> str:
    try:
        return error.read(300).decode("utf-8", "replace").strip() or error.reason
    except OSError:
        return str(error.reason)


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:  # an HTTP date: fall back to the backoff
        return 0.0
