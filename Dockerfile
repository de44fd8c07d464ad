# Images of Headstart, built from this repository (`make image`):
#
#   headstart         the control plane: `headstart worker` (forecaster, ledger,
#                     coordinator, shapers) and `headstart agent`
#   headstart-sample  the pipeline sample: its worker (profiled by Headstart), its
#                     starter, and headstart itself, so that the sample's control
#                     worker can start replicas of the sample's worker
#
# Both are static binaries on scratch, running as a non-root user (65532).
# GO_IMAGE is the Go toolchain image the binaries are built in; GOPROXY the
# module proxy it downloads from.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
ARG GOPROXY=https://proxy.golang.org,direct
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOPROXY=${GOPROXY}
WORKDIR /src
# Modules first: their layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
COPY controlplane/go.mod controlplane/go.sum controlplane/
RUN --mount=type=cache,target=/root/go/pkg/mod cd controlplane && go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    cd controlplane && go build -ldflags '-s -w' -o /out/ ./cmd/headstart ./samples/pipeline/worker ./samples/pipeline/starter \
 && mkdir -p /out/root/tmp /out/root/var/lib/headstart \
 && chmod 1777 /out/root/tmp && chown 65532:65532 /out/root/var/lib/headstart

FROM scratch AS headstart
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
# /tmp for everyone, /var/lib/headstart (state, e.g. the worker pool's) for the user.
COPY --from=build /out/root/ /
COPY --from=build /out/headstart /usr/local/bin/headstart
ENV HOME=/var/lib/headstart XDG_STATE_HOME=/var/lib/headstart
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/headstart"]
CMD ["worker", "-config", "/etc/headstart/headstart.yaml"]

FROM headstart AS headstart-sample
COPY --from=build /out/worker /out/starter /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/worker"]
CMD []
