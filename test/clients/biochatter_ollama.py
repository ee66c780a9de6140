#!/usr/bin/python3
"""BioChatter OllamaConversation(base_url=BASE_URL, prompts={}, model_name=MODEL).query("Hi!").

Mirrors biocypher/biochatter biochatter/llm_connect/ollama.py (ChatOllama(base_url, model, temperature=0.0),
model.invoke(messages)) -> langchain_community 0.3.x (@bc87773) chat_models/ollama.py _create_chat_stream ->
llms/ollama.py _OllamaCommon._default_params + _create_stream: requests.post(..., stream=True).
No auth argument: requests itself turns BASE_URL userinfo (user:key@) into Basic.
Usage: /usr/bin/python3 biochatter_ollama.py BASE_URL MODEL
"""
import json
import sys

import requests

from _fail import fail

TIMEOUT = 30  # ChatOllama.timeout defaults to None (no timeout); bounded here for tests


def main():
    base_url, model = sys.argv[1], sys.argv[2]
    # _default_params: every key is sent, unset ones as JSON null; BioChatter sets temperature=0.0
    params = {
        "model": model,
        "format": None,
        "options": {
            "mirostat": None, "mirostat_eta": None, "mirostat_tau": None, "num_ctx": None, "num_gpu": None,
            "num_thread": None, "num_predict": None, "repeat_last_n": None, "repeat_penalty": None,
            "temperature": 0.0, "stop": None, "tfs_z": None, "top_k": None, "top_p": None,
        },
        "system": None, "template": None, "keep_alive": None, "raw": None,
    }
    # _create_stream: options = {**options, "stop": stop} (stop=None); no "stream" key (Ollama defaults to true)
    params["options"] = {**params["options"], "stop": None}
    # _convert_messages_to_ollama_messages: every message carries "images": []
    request_payload = {"messages": [{"role": "user", "content": "Hi!", "images": []}], **params}
    response = requests.post(
        url=f"{base_url}/api/chat",
        headers={"Content-Type": "application/json"},
        auth=None,
        json=request_payload,
        stream=True,
        timeout=TIMEOUT,
    )
    response.encoding = "utf-8"
    if response.status_code != 200:  # real client: OllamaEndpointNotFoundError (404) / ValueError
        fail(response.status_code, response.text)
    content, last = [], None
    for line in response.iter_lines(decode_unicode=True):
        if not line:  # _chat_stream_with_aggregation skips empty lines
            continue
        part = json.loads(line)
        content.append(part.get("message", {}).get("content", ""))
        last = part
    if last is None:
        raise ValueError("No data received from Ollama stream.")
    # BioChatter reads response_metadata["eval_count"] (the done line's generation_info) -> KeyError if missing
    print(json.dumps({"content": "".join(content), "done": bool(last.get("done")), "eval_count": last.get("eval_count")}))


if __name__ == "__main__":
    main()
