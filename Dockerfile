# syntax=docker/dockerfile:1
#
# One image per Rampart binary, all from this file:
#
#   docker build --build-arg SERVICE=gateway       -t rampart/gateway:dev .
#   docker build --build-arg SERVICE=auth-service  -t rampart/auth-service:dev .
#   docker build --build-arg SERVICE=user-service  -t rampart/user-service:dev .
#   docker build --build-arg SERVICE=order-service -t rampart/order-service:dev .
#   docker build --build-arg SERVICE=devstack      -t rampart/devstack:dev .   (compose's init)
#
# docker compose builds them all. The runtime image is distroless static:
# one static binary, CA certificates, no shell, no package manager, running
# as the numeric non-root user 65532. The HEALTHCHECK runs the binary itself
# (`<binary> healthcheck` probes the ops listener's /readyz), since there is
# no curl. Nothing secret is built in: certificates, keys and passwords are
# generated at run time by the init service into a volume.

# Build stage: the Go toolchain, pinned. Modules come from the module proxy
# at build time only; nothing downloads when a container runs.
FROM golang:1.26.8-bookworm AS build
ARG SERVICE=gateway
ARG VERSION=dev
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
COPY . .
# -trimpath drops local paths from the binary; -s -w drops symbol tables;
# the service's app.Version is stamped for traces and logs.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    case "$SERVICE" in \
      gateway|auth-service|user-service|order-service) pkg="./$SERVICE"; stamp="-X github.com/rampart-go/rampart/$SERVICE/app.Version=$VERSION" ;; \
      devstack) pkg=./deploy/devstack; stamp="" ;; \
      *) echo "SERVICE must be gateway, auth-service, user-service, order-service or devstack" >&2; exit 1 ;; \
    esac; \
    go build -trimpath -ldflags "-s -w -buildid= $stamp" -o /out/rampart "$pkg"; \
    mkdir -p /out/var/lib/rampart/keys /out/var/lib/rampart/state /out/var/lib/rampart/nats; \
    chmod 0700 /out/var/lib/rampart/keys /out/var/lib/rampart/state /out/var/lib/rampart/nats

# Runtime stage.
FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE=gateway
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="rampart-${SERVICE}" \
      org.opencontainers.image.description="Rampart ${SERVICE}: secure microservices reference in Go" \
      org.opencontainers.image.source="https://github.com/rampart-go/rampart" \
      org.opencontainers.image.url="https://github.com/rampart-go/rampart" \
      org.opencontainers.image.documentation="https://github.com/rampart-go/rampart/blob/main/docs/deployment.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Rampart"
COPY --from=build /out/rampart /rampart
# Mount points owned by the runtime user: a named volume mounted here
# starts with this ownership (auth-service's signing keys, init's state and
# NATS's JetStream store), so nothing has to run as root to chown it.
COPY --from=build --chown=65532:65532 /out/var/lib/rampart /var/lib/rampart
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/rampart", "healthcheck"]
ENTRYPOINT ["/rampart"]
