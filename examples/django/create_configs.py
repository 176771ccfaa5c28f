#!/usr/bin/env python3
"""Create the example trigger configs through the action-triggers REST API.

Posts each JSON file in requests/ (or the files given) to the API and prints the
id of each created config. Every webhook URL in the files starts with
http://demo-receiver:8000, the receiver of docker-compose.yml; --webhook-base
replaces that prefix, for a receiver somewhere else.

Usage:
  ACTION_TRIGGERS_API_TOKEN=... python3 examples/django/create_configs.py
  python3 examples/django/create_configs.py --api http://127.0.0.1:8080/api/action-triggers \\
      --webhook-base http://127.0.0.1:9000 requests/3-sale-payload.json

Exits with status 1 at the first request the API rejects, after printing its
response. Uses the Python standard library only.
"""

import argparse
import json
import os
import pathlib
import sys
import urllib.error
import urllib.request

DEMO_RECEIVER = "http://demo-receiver:8000"
REQUESTS_DIRECTORY = pathlib.Path(__file__).resolve().parent / "requests"


def parse_arguments():
    parser = argparse.ArgumentParser(description="Create the example trigger configs through the REST API.")
    parser.add_argument(
        "--api",
        default="http://127.0.0.1:8080/api/action-triggers",
        help="URL of the configs collection (default: %(default)s)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("ACTION_TRIGGERS_API_TOKEN", ""),
        help="API token sent as a bearer token (default: $ACTION_TRIGGERS_API_TOKEN; none when empty)",
    )
    parser.add_argument(
        "--webhook-base",
        default=DEMO_RECEIVER,
        help="base URL that replaces %(default)s in the webhook URLs",
    )
    parser.add_argument(
        "files",
        nargs="*",
        type=pathlib.Path,
        help="request files to post (default: every requests/*.json, in name order)",
    )
    return parser.parse_args()


def post_config(api, token, body):
    """Post one config body and return the HTTP status and the decoded response body."""
    request = urllib.request.Request(api, data=body.encode("utf-8"), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", errors="replace")


def main():
    arguments = parse_arguments()
    files = arguments.files or sorted(REQUESTS_DIRECTORY.glob("*.json"))
    if not files:
        print(f"error: no request files in {REQUESTS_DIRECTORY}", file=sys.stderr)
        return 1

    for path in files:
        body = path.read_text(encoding="utf-8").replace(DEMO_RECEIVER, arguments.webhook_base.rstrip("/"))
        try:
            status, reply = post_config(arguments.api, arguments.token, body)
        except urllib.error.URLError as error:
            print(f"error: cannot reach {arguments.api}: {error.reason}", file=sys.stderr)
            return 1
        if status != 201:
            print(f"error: {path.name}: the API returned HTTP {status}: {reply}", file=sys.stderr)
            return 1
        config_id = json.loads(reply)["id"]
        print(f"created config {config_id} from {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
