"""The scripts' common error report: one JSON line with the HTTP status and body, exit 3."""
import json
import sys


def fail(status, text, **extra):
    try:
        body = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        body = text
    print(json.dumps({"error": {"status": status, "body": body}, **extra}))
    sys.exit(3)
