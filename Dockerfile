# Build the ocisync binary (manager and CLI in one).
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
# Version stamped into the binary; make docker-build passes git describe.
ARG VERSION=dev

WORKDIR /workspace
# The rest of the image, what distroless/static:nonroot has and make image
# (hack/ociimage) writes: the CA bundle, /tmp writable by all, the home
# folders of root and nonroot. The final stage's COPY --from keeps these
# owners and modes.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/root /rootfs/home/nonroot \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
    && chmod 1777 /rootfs/tmp \
    && chmod 0700 /rootfs/root /rootfs/home/nonroot \
    && chown 65532:65532 /rootfs/home/nonroot

# Download the modules in their own layer, so that changing the source does
# not download them again.
COPY go.mod go.mod
COPY go.sum go.sum
RUN go mod download

# The source; .dockerignore leaves out tests, tools and deployment files.
COPY . .

# GOARCH has no default, so the binary is built for the platform of the
# host running the build; with BuildKit, --platform sets TARGETOS/TARGETARCH
# (e.g. docker buildx build --platform linux/arm64). -tags grpcnotrace as
# the Makefile's GOTAGS, which says why.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -tags grpcnotrace -ldflags "-s -w -X github.com/ocisync/ocisync/internal/cli.Version=${VERSION}" -o ocisync .

# No base image: the binary is static and needs only /rootfs of the builder
# and passwd and group, the files make image writes without Docker.
FROM scratch
COPY --from=builder /rootfs/ /
# The users and groups root and nonroot (65532), the files make image embeds.
COPY hack/ociimage/rootfs/etc/passwd hack/ociimage/rootfs/etc/group /etc/
COPY --from=builder /workspace/ocisync /ocisync
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /
USER 65532:65532

ENTRYPOINT ["/ocisync"]
