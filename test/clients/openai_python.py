#!/usr/bin/python3
"""openai Python SDK: OpenAI(base_url=BASE_URL, api_key=API_KEY).chat.completions.create(model, messages).

Mirrors openai/openai-python 3.3.1 (@e43b422): _client.py (auth_headers: Bearer, X-Stainless-Async,
default_headers), _base_client.py (default_headers, platform_headers, _build_headers: x-stainless-retry-count,
x-stainless-read-timeout; _prepare_url: base_url + trailing slash + "chat/completions"; openapi_dumps: compact
JSON body), resources/chat/completions/completions.py create() body {"messages", "model"} (unset params omitted).
Not mirrored: the SDK's 2 automatic retries on 408/409/429/5xx and connection errors.
Usage: /usr/bin/python3 openai_python.py BASE_URL API_KEY MODEL
"""
import json
import platform
import sys

import httpx

from _fail import fail

VERSION = "3.3.1"
ARCH = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "unknown")


def main():
    base_url, api_key, model = sys.argv[1:4]
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": f"OpenAI/Python {VERSION}",
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": VERSION,
        "X-Stainless-OS": "Linux",
        "X-Stainless-Arch": ARCH,
        "X-Stainless-Runtime": platform.python_implementation(),
        "X-Stainless-Runtime-Version": platform.python_version(),
        "X-Stainless-Async": "false",
        "x-stainless-retry-count": "0",
        "x-stainless-read-timeout": "600",  # DEFAULT_TIMEOUT read; the socket timeout below is 30 s for tests
    }
    url = base_url if base_url.endswith("/") else base_url + "/"
    body = json.dumps({"messages": [{"role": "user", "content": "Hi!"}], "model": model},
                      ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    with httpx.Client(timeout=30, follow_redirects=True) as client:
        r = client.send(client.build_request("POST", url + "chat/completions", headers=headers, content=body))
    if r.is_error:  # APIStatusError (AuthenticationError for 401, ...)
        fail(r.status_code, r.text)
    data = r.json()
    print(json.dumps({"content": data["choices"][0]["message"]["content"], "usage": data.get("usage")}))


if __name__ == "__main__":
    main()
