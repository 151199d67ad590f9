"""Ask an OpenAI-compatible chat-completions endpoint through the ``openai`` client (the
``arrange`` extra), with retries and a deadline per attempt that a server dripping bytes cannot
stretch: httpx's timeouts bound each read, not the exchange.

>>> with open_client("http://127.0.0.1:9/v1", None, timeout_s=0.5) as client:  # nothing listens
...     text, reason, attempts = post_chat(client, {"model": "m", "messages": []}, max_retries=0)
>>> (text, attempts, reason.startswith("request to http://127.0.0.1:9/v1/chat/completions failed"))
(None, 1, True)
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
import urllib.parse

_NO_KEY = "no-key"  # the client insists on a key; post_chat sends no Authorization with this one


def open_client(base_url: str, api_key: str | None, timeout_s: float):
    """An ``openai.OpenAI`` client (use it in a ``with``) with its own retries off: ``post_chat``
    retries. Loopback servers (a local vLLM or Ollama) are reached without the environment's proxy.
    """
    try:
        import openai
    except ImportError as error:
        raise ImportError('the judge needs the openai client: pip install "spacelm[arrange]"') from error
    host = urllib.parse.urlsplit(base_url).hostname or ""
    http_client = openai.DefaultHttpxClient(trust_env=False) if _is_loopback(host) else None
    return openai.OpenAI(base_url=base_url, api_key=api_key or _NO_KEY, timeout=timeout_s,
                         max_retries=0, http_client=http_client)


def post_chat(client, payload: dict, *, timeout_s: float = 60.0, max_retries: int = 4,
              backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> tuple[str | None, str | None, int]:
    """Send ``payload`` (``chat.completions.create``'s arguments) with ``client``.

    Returns ``(answer text, None, attempts)`` or ``(None, reason, attempts)``; never raises for
    what a server does. Each attempt has ``timeout_s`` in total; 408, 409, 429, 5xx, timeouts and
    connection errors are retried ``max_retries`` times, the n-th retry after
    ``backoff_s * 2**(n-1)`` seconds (jittered, at most ``max_backoff_s``, at least a server's
    ``Retry-After``). The client's own retries cannot do this: they give an attempt no wall-clock
    deadline and report no attempt count.
    """
    import openai

    url = f"{str(client.base_url).rstrip('/')}/chat/completions"
    headers = {"Authorization": openai.Omit()} if client.api_key == _NO_KEY else {}
    reason = "no attempt made"
    for attempt in range(max_retries + 1):
        wait_at_least = 0.0
        try:
            completion = _within(timeout_s, lambda: client.chat.completions.create(
                **payload, extra_headers=headers))
            return _message_text(completion), None, attempt + 1
        except openai.APIStatusError as e:
            reason = f"HTTP {e.status_code} from {url}: {str(e.body or e.message)[:300]}"
            if not (e.status_code in (408, 409, 429) or e.status_code >= 500):
                return None, reason, attempt + 1
            wait_at_least = _retry_after(e.response.headers.get("retry-after"))
        except (openai.APIConnectionError, TimeoutError) as e:  # APITimeoutError is a connection error
            reason = f"request to {url} failed: {e}"
        except (openai.APIError, ValueError, LookupError, TypeError, AttributeError, RecursionError) as e:
            return None, f"malformed reply from {url}: {e!r}"[:500], attempt + 1  # not a completion
        if attempt < max_retries:
            delay = backoff_s * 2**attempt * random.uniform(0.5, 1.0)
            time.sleep(min(max_backoff_s, max(delay, wait_at_least)))
    return None, f"{reason} (gave up after {max_retries + 1} attempts)", max_retries + 1


def _within(timeout_s: float, call):
    """``call()``'s result if it comes within ``timeout_s`` seconds, else ``TimeoutError``.

    The call runs in a daemon thread, abandoned at the deadline; closing the client ends its
    connection, and a thread still blocked in a read ends when the server stops.
    """
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as e:  # handed to the caller, which sorts it out
            outcome["error"] = e

    worker = threading.Thread(target=run, name="judge-request", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"timed out: no complete reply within {timeout_s} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _message_text(completion) -> str:
    choice = completion.choices[0]
    content = choice.message.content
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p["text"] for p in content
                          if isinstance(p, dict) and isinstance(p.get("text"), str))
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"the reply has no text content (finish_reason {choice.finish_reason!r})")
    return content


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:  # an HTTP date: fall back to the backoff
        return 0.0
