#!/usr/bin/python3
"""Xinference RESTful client: xinference.client.Client(BASE_URL, api_key=KEY) and one call on it.

Mirrors xorbitsai/inference v1.17.1 xinference/client/restful/restful_client.py (Client.__init__,
_check_cluster_authenticated, launch_model, list_models, describe_model, get_model ->
RESTfulChatModelHandle.chat, get_launch_model_progress, terminate_model). requests.Session, f-string URLs,
so BASE_URL userinfo becomes Basic on every call. v3.x launch_model also sends replica_config and
virtual_env_find_links (both null by default).
Usage: /usr/bin/python3 xinference_client.py BASE_URL [--api-key KEY] launch NAME ENGINE [--uid UID]
       | list | describe UID | chat UID TEXT | progress UID | terminate UID
"""
import json
import sys

import requests

from _fail import fail

TIMEOUT = 30  # the real client sets no timeout; bounded here for tests
sent_auth = False


def out(obj):
    print(json.dumps(obj))


def check(response, parse=True):  # every client call: status_code != 200 -> RuntimeError(detail)
    if response.status_code != 200:
        fail(response.status_code, response.text, sent_authorization=sent_auth)
    return response.json() if parse else None


def main():
    global sent_auth
    args = sys.argv[1:]
    base_url, api_key = args.pop(0), None
    if args[0] == "--api-key":
        api_key = args[1]
        args = args[2:]
    session, headers = requests.Session(), {}
    # Client.__init__ -> _check_cluster_authenticated: GET /v1/cluster/auth without headers; 404 = old server
    response = session.get(f"{base_url}/v1/cluster/auth", timeout=TIMEOUT)
    cluster_authed = False if response.status_code == 404 else bool(check(response)["auth"])
    if api_key is not None and cluster_authed:  # otherwise the key is silently ignored
        headers["Authorization"] = f"Bearer {api_key}"
    sent_auth = "Authorization" in headers
    cmd, rest = args[0], args[1:]
    if cmd == "launch":
        uid = rest[rest.index("--uid") + 1] if "--uid" in rest else None
        payload = {  # launch_model(model_name, model_engine=..., model_uid=...) with its defaults (model_type "LLM")
            "model_uid": uid, "model_name": rest[0], "model_engine": rest[1], "peft_model_config": None,
            "model_type": "LLM", "model_size_in_billions": None, "model_format": None, "quantization": None,
            "replica": 1, "n_worker": 1, "n_gpu": "auto", "request_limits": None, "worker_ip": None,
            "gpu_idx": None, "model_path": None, "enable_thinking": None, "enable_virtual_env": None,
            "virtual_env_packages": None, "envs": None,
        }
        data = check(session.post(f"{base_url}/v1/models", json=payload, headers=headers, timeout=TIMEOUT))
        result = {"model_uid": data["model_uid"]}
    elif cmd == "list":
        data = check(session.get(f"{base_url}/v1/models", headers=headers, timeout=TIMEOUT))
        result = {"models": {item["id"]: item for item in data["data"]}}
    elif cmd == "describe":
        result = check(session.get(f"{base_url}/v1/models/{rest[0]}", headers=headers, timeout=TIMEOUT))
    elif cmd == "chat":
        desc = check(session.get(f"{base_url}/v1/models/{rest[0]}", headers=headers, timeout=TIMEOUT))  # get_model
        if desc["model_type"] != "LLM" or "chat" not in desc["model_ability"]:
            raise ValueError(f"no chat handle for {desc['model_type']} {desc.get('model_ability')}")
        handle_session = requests.Session()  # RESTfulModelHandle opens its own Session
        body = {"model": rest[0], "messages": [{"role": "user", "content": rest[1]}]}
        result = check(handle_session.post(f"{base_url}/v1/chat/completions", json=body, stream=False,
                                           headers=headers, timeout=TIMEOUT))
    elif cmd == "progress":
        result = check(session.get(f"{base_url}/v1/models/{rest[0]}/progress", headers=headers, timeout=TIMEOUT))
    elif cmd == "terminate":
        check(session.delete(f"{base_url}/v1/models/{rest[0]}", headers=headers, timeout=TIMEOUT), parse=False)
        result = {"terminated": rest[0]}
    else:
        raise SystemExit(f"unknown command {cmd}")
    out({**result, "sent_authorization": sent_auth})


if __name__ == "__main__":
    main()
