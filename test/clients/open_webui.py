#!/usr/bin/python3
"""Open WebUI with OLLAMA_BASE_URLS=BASE_URL (no per-connection Key): model list, version, one chat.

Mirrors open-webui backend/open_webui/routers/ollama.py (mid-2025): send_get_request (GET {url}/api/tags, then
GET {url}/api/ps from get_all_models, GET {url}/api/version from get_ollama_versions) and send_post_request
(POST {url}/api/chat, data=json.dumps(payload), streamed) with aiohttp ClientSession(trust_env=True).
No Authorization header is set (no Key), so aiohttp sends Basic from BASE_URL userinfo.
The chat payload is what generate_chat_completion forwards for a plain UI chat: GenerateChatCompletionForm
.model_dump(exclude_none=True) of convert_payload_openai_to_ollama -> {"model", "messages", "stream": true}.
Usage: /usr/bin/python3 open_webui.py BASE_URL MODEL
"""
import asyncio
import json
import re
import sys

import aiohttp

from _fail import fail

TIMEOUT = 30  # AIOHTTP_CLIENT_TIMEOUT(_MODEL_LIST)
SSL = True  # AIOHTTP_CLIENT_SESSION_SSL default


async def send_get_request(url, strict=True):
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
        async with session.get(url, headers={"Content-Type": "application/json"}, ssl=SSL) as response:
            # Open WebUI itself just returns `await response.json()` (an error body, or None when that fails),
            # so a 401 only makes the models disappear; here a non-2xx is reported for the tests.
            if strict and not response.ok:
                fail(response.status, await response.text())
            return await response.json()  # raises on a non-JSON Content-Type (Open WebUI: logged, None)


async def main():
    url, model = sys.argv[1], sys.argv[2]
    tags = await send_get_request(f"{url}/api/tags")
    models = [m["model"] for m in tags.get("models", [])]  # merge_ollama_models_lists keys on "model"
    try:
        await send_get_request(f"{url}/api/ps", strict=False)  # loaded models; errors are swallowed
    except Exception:
        pass
    version = (await send_get_request(f"{url}/api/version"))["version"]
    tuple(map(int, re.sub(r"^v|-.*", "", version).split(".")))  # get_ollama_versions parses it like this
    if ":" not in model:
        model = f"{model}:latest"  # generate_chat_completion always sends a tagged name
    payload = {"model": model, "messages": [{"role": "user", "content": "Hi!"}], "stream": True}
    session = aiohttp.ClientSession(trust_env=True, timeout=aiohttp.ClientTimeout(total=TIMEOUT))
    try:
        r = await session.post(f"{url}/api/chat", data=json.dumps(payload),
                               headers={"Content-Type": "application/json"}, ssl=SSL)
        if not r.ok:  # real client: HTTPException(status, res["error"]) or "Server Connection Error"
            fail(r.status, await r.text())
        content = []
        async for line in r.content:  # StreamingResponse(r.content) -> one NDJSON line per chunk
            part = json.loads(line)  # convert_streaming_response_ollama_to_openai: json.loads per line
            content.append(part.get("message", {}).get("content", ""))
        r.close()
    finally:
        await session.close()
    print(json.dumps({"models": models, "version": version, "content": "".join(content)}))


if __name__ == "__main__":
    asyncio.run(main())
