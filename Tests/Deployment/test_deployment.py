"""Check the deployment files by reading them, since no container engine runs here.

Covers the Dockerfile, docker-compose.yml, and the example settings and env
files. Checks that every environment variable read in Sources/ is documented, so
a new one cannot go undocumented. Runs promtool on the Prometheus alert rules and
checks their metric names and labels against those that Sources/ registers.

Run by scripts/test with the test virtual environment, which has PyYAML:

    .tmp/test-venv/bin/python -m unittest discover -s Tests/Deployment -v

Needs promtool (Debian's prometheus package) and, for the runtime package check,
dpkg with the development packages of Package.swift installed. A missing tool
fails the test instead of skipping it.
"""

import fnmatch
import json
import pathlib
import re
import shutil
import subprocess
import unittest

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SETTINGS_FILE = ROOT / "deploy" / "settings.json"
ENV_EXAMPLE = ROOT / "deploy" / "action-triggers.env.example"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

SERVICE = "action-triggers"
BROKER_SERVICES = ("redis", "rabbitmq", "kafka")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "[::1]", "localhost")


# ---------------------------------------------------------------------------
# Facts read from the sources


def source_environment_variables():
    """Return the environment variables that Sources/ reads by literal name."""
    names = set()
    for path in (ROOT / "Sources").rglob("*.swift"):
        names.update(re.findall(r'environment\["([A-Z][A-Z0-9_]*)"\]', path.read_text(encoding="utf-8")))
    return names


def package_apt_providers():
    """Return the Debian packages that Package.swift's system-library targets name."""
    manifest = (ROOT / "Package.swift").read_text(encoding="utf-8")
    packages = []
    for group in re.findall(r"\.apt\(\[([^\]]*)\]\)", manifest):
        packages.extend(re.findall(r'"([^"]+)"', group))
    return packages


def call_arguments(text, start):
    """Return the text from `start` to the parenthesis that closes the call open there."""
    depth, end = 1, start
    while depth and end < len(text):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        end += 1
    return text[start:end]


def package_target_folders():
    """Return the folder of every target in Package.swift, relative to the package root."""
    manifest = (ROOT / "Package.swift").read_text(encoding="utf-8")
    folders = []
    pattern = r'\.(target|executableTarget|systemLibrary|testTarget)\(\s*name:\s*"([^"]+)"'
    for match in re.finditer(pattern, manifest):
        custom = re.search(r'\bpath:\s*"([^"]+)"', call_arguments(manifest, match.end()))
        if custom:
            folders.append(custom.group(1))
        else:
            folders.append(("Tests/" if match.group(1) == "testTarget" else "Sources/") + match.group(2))
    return folders


def package_resource_bundles():
    """Return the resource bundle folder names that the build puts beside the executable."""
    manifest = (ROOT / "Package.swift").read_text(encoding="utf-8")
    package = re.search(r'Package\(\s*name:\s*"([^"]+)"', manifest).group(1)
    bundles = []
    for match in re.finditer(r'\.(?:target|executableTarget)\(\s*name:\s*"([^"]+)"', manifest):
        if "resources:" in call_arguments(manifest, match.end()):
            bundles.append(f"{package}_{match.group(1)}.resources")
    return bundles


def registered_metrics():
    """Return each metric name registered in Sources/ with its type and label names."""
    metrics = {}
    pattern = re.compile(r'registry\.(counter|gauge|histogram|labeledCounter)\(\s*"(action_triggers_\w+)"')
    for path in (ROOT / "Sources").rglob("*.swift"):
        text = path.read_text(encoding="utf-8")
        matches = list(pattern.finditer(text))
        for index, match in enumerate(matches):
            # The registration's arguments run until the next registration.
            end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
            arguments = text[match.end():end]
            labels = set(re.findall(r'\(\s*"(\w+)",', arguments))
            label_list = re.search(r"labelNames:\s*\[([^\]]*)\]", arguments)
            if label_list:
                labels.update(re.findall(r'"(\w+)"', label_list.group(1)))
            kind = "counter" if match.group(1) == "labeledCounter" else match.group(1)
            entry = metrics.setdefault(match.group(2), {"type": kind, "labels": set()})
            entry["labels"].update(labels)
    return metrics


def runtime_libraries(dev_package):
    """Return the packages that a -dev package pins to its own version: its shared libraries."""
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is None:
        raise AssertionError("dpkg-query is missing: run the tests on Debian, as scripts/test does")
    result = subprocess.run(
        [dpkg_query, "--show", "--showformat=${Depends}", dev_package], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise AssertionError(f"{dev_package} is not installed, so its runtime library is unknown: {result.stderr.strip()}")
    return [
        match.group(1)
        for match in re.finditer(r"([a-z0-9][a-z0-9.+-]*)(?::\w+)?\s*\(=", result.stdout)
        if not match.group(1).endswith("-dev")
    ]


# ---------------------------------------------------------------------------
# Facts read from the deployment files


def dockerfile_stages():
    """Return the Dockerfile's stages as dicts: base image, name and instructions."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    stages = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        arguments = arguments.strip()
        if instruction == "FROM":
            parts = arguments.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"image": parts[0], "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((instruction, arguments))
    return stages


def installed_packages(stage):
    """Return the packages that a stage's `apt-get install` commands name."""
    packages = set()
    for instruction, arguments in stage["instructions"]:
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            words = command.split()
            if "apt-get" in words and "install" in words:
                packages.update(word for word in words[words.index("install") + 1:] if not word.startswith("-"))
    return packages


def instructions(stage, name):
    return [arguments for instruction, arguments in stage["instructions"] if instruction == name]


def load_compose():
    with COMPOSE_FILE.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


def load_settings():
    return json.loads(SETTINGS_FILE.read_text(encoding="utf-8"))


def env_file_variables(path):
    """Return the variables an env file sets, including commented-out examples."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.append(match.group(1))
    return names


def uncommented_env_file_values(path):
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def parse_duration(text):
    """Return a compose duration such as 1m30s in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    if not parts or "".join(number + unit for number, unit in parts) != str(text):
        raise AssertionError(f"cannot read the duration {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def healthcheck_command(service):
    test = service.get("healthcheck", {}).get("test")
    if isinstance(test, list):
        return " ".join(test[1:])
    return test or ""


def documented_environment_variables():
    """Return the variables named in docs/configuration.md's environment table."""
    text = CONFIGURATION_DOC.read_text(encoding="utf-8")
    section = text.split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split(" | ")[0]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


# ---------------------------------------------------------------------------
# Tests


class SourceFactsTests(unittest.TestCase):
    """The facts the other tests derive from the sources are found at all."""

    def test_environment_variables_found(self):
        variables = source_environment_variables()
        for name in ("DATABASE_URL", "ACTION_TRIGGERS_API_TOKEN", "ACTION_TRIGGERS_LISTEN"):
            self.assertIn(name, variables)

    def test_apt_providers_found(self):
        self.assertIn("libpq-dev", package_apt_providers())

    def test_target_folders_found(self):
        folders = package_target_folders()
        self.assertIn("Sources/ActionTriggersService", folders)
        self.assertIn("Tests/IntegrationTests", folders)
        for folder in folders:
            with self.subTest(folder=folder):
                self.assertTrue((ROOT / folder).is_dir())

    def test_resource_bundles_found(self):
        self.assertEqual(package_resource_bundles(), ["action-triggers_ActionTriggersService.resources"])

    def test_metrics_found(self):
        metrics = registered_metrics()
        self.assertIn("action_triggers_delivery_attempts_total", metrics)
        self.assertEqual(metrics["action_triggers_delivery_attempts_total"]["labels"], {"target", "outcome"})
        self.assertEqual(metrics["action_triggers_delivery_attempt_duration_seconds"]["type"], "histogram")


class EnvironmentDocumentationTests(unittest.TestCase):
    def test_every_variable_documented(self):
        documented = documented_environment_variables()
        for name in sorted(source_environment_variables()):
            with self.subTest(variable=name):
                self.assertIn(name, documented, f"{name} is read in Sources/ but missing from docs/configuration.md")

    def test_every_documented_variable_read(self):
        read = source_environment_variables()
        for name in sorted(documented_environment_variables()):
            with self.subTest(variable=name):
                self.assertIn(name, read, f"docs/configuration.md documents {name}, which Sources/ never reads")


class DockerfileTests(unittest.TestCase):
    def setUp(self):
        self.stages = dockerfile_stages()
        self.build = self.stages[0]
        self.runtime = self.stages[-1]

    def test_two_stages(self):
        self.assertEqual(len(self.stages), 2)
        self.assertEqual(self.build["name"], "build")

    def test_build_image_matches_toolchain(self):
        match = re.fullmatch(r"swift:(\d+\.\d+\.\d+)-bookworm", self.build["image"])
        self.assertIsNotNone(match, f"build image {self.build['image']} is not swift:<version>-bookworm")
        swift = shutil.which("swift")
        self.assertIsNotNone(swift, "swift is not on the PATH")
        output = subprocess.run([swift, "--version"], capture_output=True, text=True).stdout
        toolchain = re.search(r"Swift version (\d+\.\d+(?:\.\d+)?)", output)
        self.assertIsNotNone(toolchain, output)
        version = toolchain.group(1) if toolchain.group(1).count(".") == 2 else toolchain.group(1) + ".0"
        self.assertEqual(match.group(1), version, "the build image and the test toolchain differ: update both")

    def test_build_copies_every_target_folder(self):
        copied = []
        for arguments in instructions(self.build, "COPY"):
            paths = [word for word in arguments.split() if not word.startswith("--")]
            copied.extend(path.rstrip("/") for path in paths[:-1])
        self.assertIn("Package.swift", copied)
        for folder in package_target_folders():
            with self.subTest(folder=folder):
                self.assertTrue(
                    any(folder == path or folder.startswith(path + "/") for path in copied),
                    f"the build stage does not copy {folder}, and SwiftPM rejects a package with a target folder missing",
                )

    def test_dockerignore_keeps_target_folders(self):
        patterns = [
            line.strip().rstrip("/")
            for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        for folder in ["Package.swift", *package_target_folders()]:
            parents = [str(pathlib.PurePosixPath(*pathlib.PurePosixPath(folder).parts[: index + 1]))
                       for index in range(len(pathlib.PurePosixPath(folder).parts))]
            for pattern in patterns:
                with self.subTest(folder=folder, pattern=pattern):
                    self.assertFalse(any(fnmatch.fnmatchcase(parent, pattern) for parent in parents))

    def test_runtime_image_slim(self):
        self.assertEqual(self.runtime["image"], "debian:bookworm-slim")

    def test_build_installs_dev_packages(self):
        installed = installed_packages(self.build)
        for package in package_apt_providers():
            with self.subTest(package=package):
                self.assertIn(package, installed)

    def test_runtime_installs_libraries(self):
        installed = installed_packages(self.runtime)
        for package in package_apt_providers():
            with self.subTest(package=package):
                libraries = runtime_libraries(package)
                self.assertTrue(libraries, f"dpkg lists no runtime library of {package}")
                self.assertTrue(
                    installed & set(libraries),
                    f"the runtime stage installs none of {libraries}, the libraries of {package}",
                )

    def test_runtime_has_no_dev_packages(self):
        dev_packages = sorted(package for package in installed_packages(self.runtime) if package.endswith("-dev"))
        self.assertEqual(dev_packages, [])

    def test_runtime_copies_resources(self):
        copied = " ".join(instructions(self.build, "RUN") + instructions(self.runtime, "COPY"))
        for bundle in package_resource_bundles():
            with self.subTest(bundle=bundle):
                self.assertIn(bundle, copied)

    def test_non_root_user(self):
        users = instructions(self.runtime, "USER")
        self.assertTrue(users, "the runtime stage sets no USER")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, ("root", "0"))

    def test_exec_form_entrypoint(self):
        entrypoints = instructions(self.runtime, "ENTRYPOINT")
        self.assertEqual(len(entrypoints), 1)
        command = json.loads(entrypoints[0])
        self.assertIsInstance(command, list)
        self.assertTrue(command[0].endswith("/action-triggers"))
        self.assertEqual(json.loads(instructions(self.runtime, "CMD")[-1]), ["serve"])

    def test_stop_signal(self):
        self.assertEqual(instructions(self.runtime, "STOPSIGNAL"), ["SIGTERM"])

    def test_healthcheck_on_readyz(self):
        checks = instructions(self.runtime, "HEALTHCHECK")
        self.assertEqual(len(checks), 1)
        command = re.search(r"CMD\s+(\[.*\])", checks[0])
        self.assertIsNotNone(command, "HEALTHCHECK is not in exec form")
        arguments = json.loads(command.group(1))
        self.assertIn(arguments[0], installed_packages(self.runtime), f"{arguments[0]} is not installed")
        port = self.listen_port()
        self.assertIn(f"http://127.0.0.1:{port}/readyz", arguments)

    def test_exposed_port_is_listen_port(self):
        self.assertEqual(instructions(self.runtime, "EXPOSE"), [str(self.listen_port())])

    def listen_port(self):
        environment = " ".join(instructions(self.runtime, "ENV"))
        match = re.search(r"ACTION_TRIGGERS_LISTEN=\S+:(\d+)", environment)
        self.assertIsNotNone(match, "the runtime stage does not set ACTION_TRIGGERS_LISTEN")
        return int(match.group(1))


class ComposeTests(unittest.TestCase):
    def setUp(self):
        self.compose = load_compose()
        self.services = self.compose["services"]
        self.service = self.services[SERVICE]
        self.environment = self.service.get("environment", {})

    def test_services(self):
        expected = {"postgres", SERVICE, "demo-receiver", *BROKER_SERVICES}
        self.assertEqual(set(self.services), expected)

    def test_profiles(self):
        self.assertNotIn("profiles", self.services["postgres"])
        self.assertNotIn("profiles", self.service)
        for name in (*BROKER_SERVICES, "demo-receiver"):
            with self.subTest(service=name):
                self.assertTrue(self.services[name].get("profiles"), f"{name} has no profile")

    def test_every_service_has_healthcheck(self):
        for name, service in self.services.items():
            with self.subTest(service=name):
                self.assertTrue(healthcheck_command(service), f"{name} has no healthcheck")

    def test_postgres_volume_and_healthcheck(self):
        postgres = self.services["postgres"]
        targets = [volume.split(":")[1] for volume in postgres["volumes"]]
        self.assertIn("/var/lib/postgresql/data", targets)
        data_volume = next(volume.split(":")[0] for volume in postgres["volumes"] if ":/var/lib/postgresql/data" in volume)
        self.assertIn(data_volume, self.compose.get("volumes", {}))
        self.assertIn("pg_isready", healthcheck_command(postgres))

    def test_postgres_init_files_exist(self):
        for volume in self.services["postgres"]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                with self.subTest(volume=volume):
                    self.assertTrue((ROOT / source).is_file(), f"{source} does not exist")

    def test_waits_for_healthy_database(self):
        self.assertEqual(self.service["depends_on"], {"postgres": {"condition": "service_healthy"}})

    def test_serve_migrates_on_start(self):
        self.assertEqual(self.service.get("command"), ["serve"])

    def test_settings_mounted_read_only(self):
        path = self.environment["ACTION_TRIGGERS_SETTINGS"]
        mounts = [volume.split(":") for volume in self.service["volumes"]]
        matching = [mount for mount in mounts if mount[1] == path]
        self.assertEqual(len(matching), 1, f"nothing is mounted at {path}")
        self.assertEqual(matching[0][2:], ["ro"])
        self.assertTrue((ROOT / matching[0][0]).is_file())

    def test_env_file_is_example_copy(self):
        env_files = self.service["env_file"]
        self.assertEqual(len(env_files), 1)
        path = env_files[0]["path"] if isinstance(env_files[0], dict) else env_files[0]
        real = ROOT / path
        self.assertEqual(real.resolve(), (ROOT / "deploy" / "action-triggers.env").resolve())
        self.assertTrue(ENV_EXAMPLE.is_file())
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--quiet", "--no-index", path])
        self.assertEqual(ignored.returncode, 0, f"{path} holds secrets but git does not ignore it")

    def test_token_set_for_non_loopback_listen(self):
        host = self.environment["ACTION_TRIGGERS_LISTEN"].rsplit(":", 1)[0]
        self.assertNotIn(host, LOOPBACK_HOSTS)
        token = uncommented_env_file_values(ENV_EXAMPLE).get("ACTION_TRIGGERS_API_TOKEN", "")
        self.assertTrue(token, "the service listens on a non-loopback address, which needs ACTION_TRIGGERS_API_TOKEN")

    def test_port_published_on_loopback(self):
        listen_port = self.environment["ACTION_TRIGGERS_LISTEN"].rsplit(":", 1)[1]
        self.assertEqual(self.service["ports"], [f"127.0.0.1:{listen_port}:{listen_port}"])

    def test_every_port_published_on_loopback(self):
        for name, service in self.services.items():
            for port in service.get("ports", []):
                with self.subTest(service=name, port=port):
                    self.assertTrue(str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host")

    def test_healthcheck_on_readyz(self):
        listen_port = self.environment["ACTION_TRIGGERS_LISTEN"].rsplit(":", 1)[1]
        self.assertIn(f"http://127.0.0.1:{listen_port}/readyz", healthcheck_command(self.service))

    def test_stop_grace_exceeds_shutdown(self):
        # serve exits at most shutdown_grace_secs + 5 seconds after SIGTERM.
        shutdown_grace = load_settings().get("shutdown_grace_secs", 10)
        self.assertEqual(self.service.get("stop_signal"), "SIGTERM")
        self.assertGreater(parse_duration(self.service["stop_grace_period"]), shutdown_grace + 5)

    def test_database_url_names_postgres_service(self):
        url = uncommented_env_file_values(ENV_EXAMPLE)["DATABASE_URL"]
        match = re.match(r"postgresql://([^:]+):([^@]+)@([^:/]+):(\d+)/(\w+)$", url)
        self.assertIsNotNone(match, url)
        user, password, host, port, database = match.groups()
        postgres = self.services["postgres"]["environment"]
        self.assertEqual(host, "postgres")
        self.assertEqual(port, "5432")
        self.assertEqual(user, postgres["POSTGRES_USER"])
        self.assertEqual(password, postgres["POSTGRES_PASSWORD"])
        self.assertEqual(database, postgres["POSTGRES_DB"])

    def test_variables_are_read(self):
        settings = load_settings()
        dynamic = {
            source["env"] for source in settings.get("dynamic_values", {}).values() if "env" in source
        }
        known = source_environment_variables() | dynamic
        names = list(self.environment) + env_file_variables(ENV_EXAMPLE)
        for name in names:
            with self.subTest(variable=name):
                self.assertIn(name, known, f"{name} is set for the service, which never reads it")

    def test_dynamic_value_variables_in_env_example(self):
        example = uncommented_env_file_values(ENV_EXAMPLE)
        for name, source in load_settings().get("dynamic_values", {}).items():
            if "env" in source:
                with self.subTest(dynamic_value=name):
                    self.assertIn(source["env"], example)

    def test_broker_hosts_are_services(self):
        for name, broker in load_settings().get("brokers", {}).items():
            details = broker.get("conn_details", {})
            host = details.get("host") or details.get("bootstrap.servers", "").split(":")[0]
            with self.subTest(broker=name):
                self.assertIn(host, self.services)
                self.assertIn(broker["broker_type"], self.services[host]["image"])

    def test_webhook_patterns_name_demo_receiver(self):
        receiver = self.services["demo-receiver"]
        port = receiver["command"][-1]
        patterns = load_settings()["whitelisted_webhook_endpoint_patterns"]
        self.assertEqual(patterns, [f"http://demo-receiver:{port}/"])
        source = receiver["volumes"][0].split(":")[0]
        self.assertTrue((ROOT / source).is_file())


class AlertRuleTests(unittest.TestCase):
    def promtool(self, *arguments):
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool is missing: install Debian's prometheus package")
        result = subprocess.run([promtool, *arguments], capture_output=True, text=True, cwd=ALERT_RULES.parent)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_promtool_check_rules(self):
        self.promtool("check", "rules", ALERT_RULES.name)

    def test_promtool_test_rules(self):
        self.promtool("test", "rules", ALERT_TESTS.name)

    def rules(self):
        with ALERT_RULES.open(encoding="utf-8") as file:
            rules = yaml.safe_load(file)
        return [rule for group in rules["groups"] for rule in group["rules"]]

    def expressions(self):
        return [rule["expr"] for rule in self.rules()]

    def test_alerts_documented(self):
        text = OPERATIONS_DOC.read_text(encoding="utf-8")
        documented = set(re.findall(r"^\| `(ActionTriggers\w+)` \|", text, re.M))
        alerts = {rule["alert"] for rule in self.rules()}
        self.assertEqual(documented, alerts, "the alert table of docs/operations.md and alerts.yml differ")

    def test_metrics_exist(self):
        metrics = registered_metrics()
        for expression in self.expressions():
            for name in re.findall(r"\b(action_triggers_\w+)", expression):
                with self.subTest(metric=name):
                    base = re.sub(r"_(bucket|sum|count)$", "", name)
                    if name != base and metrics.get(base, {}).get("type") == "histogram":
                        continue
                    self.assertIn(name, metrics, f"{name} is not a metric the service exports")

    def test_label_matchers_exist(self):
        metrics = registered_metrics()
        for expression in self.expressions():
            for name, matchers in re.findall(r"\b(action_triggers_\w+)\{([^}]*)\}", expression):
                labels = metrics.get(re.sub(r"_(bucket|sum|count)$", "", name), {}).get("labels", set())
                for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                    with self.subTest(metric=name, label=label):
                        self.assertIn(label, labels | {"job", "instance"})

    def test_grouping_labels_exist(self):
        all_labels = set().union(*(metric["labels"] for metric in registered_metrics().values()))
        all_labels |= {"job", "instance", "le"}
        for expression in self.expressions():
            for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expression):
                for label in re.findall(r"\w+", group):
                    with self.subTest(label=label):
                        self.assertIn(label, all_labels)


if __name__ == "__main__":
    unittest.main()
