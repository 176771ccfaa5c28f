# syntax=docker/dockerfile:1
#
# Container image of action-triggers: a build stage with the Swift toolchain and the
# C libraries' development packages, and a runtime stage with only their shared
# libraries. Build and run it with docker-compose.yml, or on its own:
#
#   docker build -t action-triggers .
#   docker run --env-file deploy/action-triggers.env -e DATABASE_URL=postgresql://USER@HOST/DB \
#       -p 127.0.0.1:8080:8080 action-triggers
#
# The env file's own DATABASE_URL names the host `postgres`, which only the
# compose network resolves, hence the -e override.
#
# The development packages below are the `providers` of the system-library targets
# in Package.swift, and the runtime packages are their shared libraries; a test in
# Tests/Deployment checks that the two lists stay in step with Package.swift.

FROM swift:6.3.1-bookworm AS build

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends \
        libpq-dev \
        libcurl4-openssl-dev \
        libmicrohttpd-dev \
        libhiredis-dev \
        librabbitmq-dev \
        librdkafka-dev \
        libssl-dev \
        pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# The package has no dependencies to fetch. SwiftPM checks that every target's
# folder exists, test targets included, so Tests/ is copied although only the
# executable is built. --static-swift-stdlib links the Swift runtime and
# Foundation into the executable, so the runtime stage needs no toolchain.
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product action-triggers

# Stage the executable next to its resource bundle (the migrations in sql/ and
# openapi.json): Bundle.module looks for the bundle beside the executable first.
RUN mkdir /staging \
    && bin_path="$(swift build -c release --show-bin-path)" \
    && cp "$bin_path/action-triggers" /staging/ \
    && cp -R "$bin_path/action-triggers_ActionTriggersService.resources" /staging/

FROM debian:bookworm-slim AS runtime

# The shared libraries of the packages installed in the build stage, libstdc++
# (the static Swift runtime still links it dynamically), CA certificates for TLS
# to webhooks and brokers, and curl for the HEALTHCHECK. A release build with
# --static-swift-stdlib needs no other library (checked with readelf -d).
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends \
        libpq5 \
        libcurl4 \
        libmicrohttpd12 \
        libhiredis0.14 \
        librabbitmq4 \
        librdkafka1 \
        libssl3 \
        libstdc++6 \
        ca-certificates \
        curl \
        tzdata \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin action-triggers

WORKDIR /app
COPY --from=build /staging /app

# The service listens on every interface inside the container, which it only does
# with ACTION_TRIGGERS_API_TOKEN set (pass it with --env-file). Publish the port on
# loopback unless clients on other hosts need the REST API or /metrics.
ENV ACTION_TRIGGERS_LISTEN=0.0.0.0:8080
EXPOSE 8080

USER action-triggers:action-triggers

# /readyz answers 200 once every worker has a working database connection. The
# check targets port 8080: change it together with ACTION_TRIGGERS_LISTEN.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--output", "/dev/null", "http://127.0.0.1:8080/readyz"]

# The executable runs as PID 1 (exec form, no shell in between) and handles SIGTERM
# itself: it stops claiming work, lets requests in flight finish for
# shutdown_grace_secs, and exits. Give the container a stop timeout longer than
# shutdown_grace_secs + 5 seconds (docker-compose.yml sets stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/action-triggers"]
CMD ["serve"]
