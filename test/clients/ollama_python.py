#!/usr/bin/python3
"""Official ollama Python client: Client() configured from the environment, then list() and chat().

Mirrors ollama/ollama-python 0.6.2 (@25b9329) ollama/_client.py: BaseClient.__init__ (headers, OLLAMA_API_KEY,
_parse_host(OLLAMA_HOST) -> httpx.Client(base_url, follow_redirects=True)), Client._request, list(), chat(),
and the ChatRequest(...).model_dump(exclude_none=True) body. _parse_host DROPS user:key@ (no auth sent) but
keeps a path such as /k/<key>.
Usage: OLLAMA_HOST=URL [OLLAMA_API_KEY=KEY] /usr/bin/python3 ollama_python.py MODEL
"""
import ipaddress
import json
import os
import platform
import sys
import urllib.parse

import httpx

from _fail import fail

VERSION = "0.6.2"
TIMEOUT = 30  # the real client defaults to timeout=None


def _parse_host(host):
    host, port = host or "", 11434
    scheme, _, hostport = host.partition("://")
    if not hostport:
        scheme, hostport = "http", host
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    host = split.hostname or "127.0.0.1"
    port = split.port or port
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            host = f"[{host}]"
    except ValueError:
        ...
    if path := split.path.strip("/"):
        return f"{scheme}://{host}:{port}/{path}"
    return f"{scheme}://{host}:{port}"


def request(client, method, url, **kwargs):  # Client._request_raw: raise_for_status -> ResponseError(text, status)
    r = client.request(method, url, **kwargs)
    if r.is_error:
        fail(r.status_code, r.text)
    return r.json()


def main():
    model = sys.argv[1]
    headers = {k.lower(): v for k, v in {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"ollama-python/{VERSION} ({platform.machine()} {platform.system().lower()}) "
                      f"Python/{platform.python_version()}",
    }.items() if v is not None}
    api_key = os.getenv("OLLAMA_API_KEY", None)
    if not headers.get("authorization") and api_key:
        headers["authorization"] = f"Bearer {api_key}"
    client = httpx.Client(base_url=_parse_host(os.getenv("OLLAMA_HOST")), follow_redirects=True,
                          timeout=TIMEOUT, headers=headers)
    tags = request(client, "GET", "/api/tags")
    models = [m.get("model") for m in tags["models"]]  # ListResponse.Model.model
    # ChatRequest field order (model, stream, options, format, keep_alive, messages, tools, think, ...);
    # None fields dropped, but tools=list(_copy_tools(None)) == [] is kept
    body = {"model": model, "stream": False, "messages": [{"role": "user", "content": "Hi!"}], "tools": []}
    chat = request(client, "POST", "/api/chat", json=body)
    print(json.dumps({"models": models, "content": chat["message"]["content"]}))


if __name__ == "__main__":
    main()
