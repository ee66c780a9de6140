#!/usr/bin/python3
"""langchain_ollama.ChatOllama(model=MODEL, base_url=BASE_URL).invoke("Hi!").

Mirrors langchain-ai/langchain libs/partners/ollama (langchain-ollama 1.x): _utils.py parse_url_with_auth +
merge_auth_headers (userinfo percent-decoded into "Authorization: Basic", stripped from the URL),
chat_models.py _set_clients -> ollama.Client(host=cleaned_url, headers=...) and _chat_params (stream=True,
options only with the fields that are set) -> ollama-python 0.6.2 _client.py Client.chat (streamed NDJSON).
Usage: /usr/bin/python3 langchain_ollama.py BASE_URL MODEL   (OLLAMA_API_KEY applies only without userinfo)
"""
import base64
import json
import os
import platform
import sys
from urllib.parse import unquote, urlparse, urlunparse

import httpx

from _fail import fail

OLLAMA_PY_VERSION = "0.6.2"
TIMEOUT = 30  # ollama-python defaults to timeout=None


def parse_url_with_auth(url):  # simplified: BASE_URL always has an http(s) scheme here
    parsed = urlparse(url)
    if not parsed.username:
        return url, None
    credentials = f"{unquote(parsed.username)}:{unquote(parsed.password or '')}"
    headers = {"Authorization": f"Basic {base64.b64encode(credentials.encode()).decode()}"}
    hostname = parsed.hostname or ""
    netloc = (f"[{hostname}]" if ":" in hostname else hostname) + (f":{parsed.port}" if parsed.port is not None else "")
    return urlunparse((parsed.scheme, netloc, parsed.path, parsed.params, parsed.query, parsed.fragment)), headers


def _parse_host(host):  # ollama-python _parse_host (scheme://host:port[/path]; IPv6 handling omitted)
    scheme, _, hostport = host.partition("://")
    split = urlparse(f"{scheme}://{hostport}")
    port = split.port or {"http": 80, "https": 443}[scheme]
    path = split.path.strip("/")
    return f"{scheme}://{split.hostname}:{port}" + (f"/{path}" if path else "")


def main():
    base_url, model = sys.argv[1], sys.argv[2]
    cleaned_url, auth_headers = parse_url_with_auth(base_url)
    client_headers = dict(auth_headers or {})  # client_kwargs["headers"]
    headers = {k.lower(): v for k, v in {  # ollama BaseClient.__init__
        **client_headers,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"ollama-python/{OLLAMA_PY_VERSION} ({platform.machine()} {platform.system().lower()}) "
                      f"Python/{platform.python_version()}",
    }.items()}
    api_key = os.getenv("OLLAMA_API_KEY", None)
    if not headers.get("authorization") and api_key:
        headers["authorization"] = f"Bearer {api_key}"
    client = httpx.Client(base_url=_parse_host(cleaned_url), follow_redirects=True, timeout=TIMEOUT, headers=headers)
    # _chat_params -> Client.chat(**params) -> ChatRequest.model_dump(exclude_none=True):
    # message "images": [] is dropped by _copy_messages; options {} and tools [] are kept
    body = {"model": model, "stream": True, "options": {}, "messages": [{"role": "user", "content": "Hi!"}], "tools": []}
    content = []
    with client.stream("POST", "/api/chat", json=body) as r:
        if r.is_error:
            r.read()
            fail(r.status_code, r.text)
        for line in r.iter_lines():
            part = json.loads(line)
            if err := part.get("error"):  # ResponseError(err), status_code -1
                fail(-1, part)
            content.append(part.get("message", {}).get("content", ""))
    print(json.dumps({"content": "".join(content)}))


if __name__ == "__main__":
    main()
