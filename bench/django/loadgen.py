"""Django side of bench/targets.py: migrations, the ancestor's config, and the save loop.

Usage (DJANGO_SETTINGS_MODULE is set here, BENCH_DATABASE_URL must be set):
  loadgen.py migrate
  loadgen.py ancestor-config --receiver-url URL [--template]
  loadgen.py saves --rows N [--warm-up N] [--reset-url URL]

`saves` creates N Customer rows with Model.save(), each in its own transaction
(Django's autocommit), and prints one JSON object: the rows, the wall-clock
time (time.time()) before the first save and after every save, and the CPU
seconds of this process. With --reset-url it first saves --warm-up rows that
are not timed, then POSTs to that URL, so the receiver deletes its records of their webhooks.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from myapp.models import Customer  # noqa: E402


def create_ancestor_config(receiver_url, template):
    """Creates a post_save config on myapp.Customer with one POST webhook, through the ORM."""
    from django.contrib.contenttypes.models import ContentType

    from action_triggers.models import Config, ConfigSignal, Webhook

    payload = None
    if template:
        payload = {"id": "{{ instance.id }}", "name": "{{ instance.name }}"}
    config = Config.objects.create(active=True, payload=payload)
    config.content_types.add(ContentType.objects.get_for_model(Customer))
    ConfigSignal.objects.create(config=config, signal="post_save")
    Webhook.objects.create(config=config, url=receiver_url, http_method="POST")


def save_loop(rows, warm_up, reset_url):
    for number in range(warm_up):
        Customer(name=f"warm-up customer {number:06d}", email=f"warmup{number:06d}@example.com").save()
    if reset_url:
        urllib.request.urlopen(urllib.request.Request(reset_url, method="POST"), timeout=10).read()

    cpu_started = time.process_time()
    commit_times = []
    started = time.time()
    for number in range(rows):
        Customer(name=f"bench customer {number:06d}", email=f"customer{number:06d}@example.com").save()
        commit_times.append(time.time())
    json.dump(
        {"rows": rows, "started": started, "commit_times": commit_times, "cpu_seconds": time.process_time() - cpu_started},
        sys.stdout,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the Django migrations")
    config = commands.add_parser("ancestor-config", help="create the ancestor's Config (needs BENCH_ANCESTOR=1)")
    config.add_argument("--receiver-url", required=True)
    config.add_argument("--template", action="store_true", help="give the config a payload template")
    saves = commands.add_parser("saves", help="time a loop of Customer saves")
    saves.add_argument("--rows", type=int, required=True)
    saves.add_argument("--warm-up", type=int, default=0, help="untimed saves first (default 0)")
    saves.add_argument("--reset-url", help="URL to POST to after the warm-up")
    arguments = parser.parse_args()

    if arguments.command == "migrate":
        call_command("migrate", verbosity=0)
    elif arguments.command == "ancestor-config":
        create_ancestor_config(arguments.receiver_url, arguments.template)
    else:
        save_loop(arguments.rows, arguments.warm_up, arguments.reset_url)


if __name__ == "__main__":
    main()
