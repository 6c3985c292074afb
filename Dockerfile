# Build the ocisync binary (manager and CLI in one).
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
# Version stamped into the binary; make docker-build passes git describe.
ARG VERSION=dev

WORKDIR /workspace
# Download the modules in their own layer, so that changing the source does
# not download them again.
COPY go.mod go.mod
COPY go.sum go.sum
RUN go mod download

# The source; .dockerignore leaves out tests, tools and deployment files.
COPY . .

# GOARCH has no default, so the binary is built for the platform of the
# host running the build; with BuildKit, --platform sets TARGETOS/TARGETARCH
# (e.g. docker buildx build --platform linux/arm64).
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X github.com/ocisync/ocisync/internal/cli.Version=${VERSION}" -o ocisync .

# Use distroless as minimal base image to package the binary.
# Refer to https://github.com/GoogleContainerTools/distroless for more details.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/ocisync /ocisync
USER 65532:65532

ENTRYPOINT ["/ocisync"]
