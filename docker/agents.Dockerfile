# syntax=docker/dockerfile:1
# The branchml agents image: every agents/cmd/* binary on PATH, git, a
# non-root user. Jenkins runs it as the "branchml" container of the pod
# template in resources/branchml/pod-template.yaml.
#
#   docker build -f docker/agents.Dockerfile --build-arg VERSION=v0.1.0 -t ghcr.io/branchml/agents:v0.1.0 .

ARG GO_VERSION=1.26
ARG DEBIAN_VERSION=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_VERSION} AS build
ARG VERSION=v0.1.0-dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
# Modules first, so that source edits do not refetch them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY agents/ agents/
COPY resources/ resources/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/branchml/branchml/agents/cli.Version=${VERSION}" \
      -o /out/ ./agents/cmd/... \
 && cd /out && sha256sum branchml* > SHA256SUMS

FROM debian:${DEBIAN_VERSION}-slim
ARG VERSION=v0.1.0-dev
LABEL org.opencontainers.image.title="branchml agents" \
      org.opencontainers.image.source="https://github.com/branchml/branchml" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 branchml \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/branchml --shell /bin/sh branchml
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /home/branchml
ENV HOME=/home/branchml
# No ENTRYPOINT: Jenkins runs "sleep infinity" (pod template) and execs steps.
CMD ["branchml", "--help"]
