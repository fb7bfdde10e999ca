# syntax=docker/dockerfile:1
# check=skip=FromPlatformFlagConstDisallowed
#
# proa as an image to copy from. The last stage is FROM scratch and holds only /proa and its licenses
# (/usr/share/doc/proa/), so that images use it with
#
#     COPY --from=REGISTRY/proa:0.3.0 /proa /proa
#
# Build (BuildKit, the default builder since Docker 23):
#
#     docker build -f scratch.Dockerfile -t REGISTRY/proa:0.3.0 .
#     docker buildx build -f scratch.Dockerfile --platform linux/amd64,linux/arm64 -t REGISTRY/proa:0.3.0 --push .
#     docker build -f scratch.Dockerfile --target distroless -t REGISTRY/proa:0.3.0-distroless .
#
# The build stage runs `make static`, as CI does: it installs the musl and aarch64 cross toolchains from Debian and
# builds both variants for x86_64 and aarch64, always on linux/amd64 (the platform is pinned on purpose: the Makefile
# cross-compiles from amd64, so one build serves every target platform, emulated on arm64 machines). The final
# stages pick the binary for the platform being built. Pass --build-arg PROA_GIT_COMMIT=$(git rev-parse --short HEAD)
# when the build context has no usable .git (a git worktree's .git points outside the context); otherwise
# `proa --version` says "commit unknown".

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm

FROM --platform=linux/amd64 ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
ARG PROA_GIT_COMMIT
RUN make static
# One directory per Docker architecture name, laid out as the final image's root.
RUN set -e; \
    for pair in amd64:x86_64 arm64:aarch64; do \
        docker_arch=${pair%%:*}; arch=${pair#*:}; \
        mkdir -p /out/$docker_arch/usr/share/doc/proa /out-kill/$docker_arch/usr/share/doc/proa; \
        cp target/static/proa-$arch-linux-musl /out/$docker_arch/proa; \
        cp target/static/proa-kill-$arch-linux-musl /out-kill/$docker_arch/proa; \
        cp LICENSE-MIT LICENSE-APACHE /out/$docker_arch/usr/share/doc/proa/; \
        cp LICENSE-MIT LICENSE-APACHE /out-kill/$docker_arch/usr/share/doc/proa/; \
    done

# The `kill` variant (--kill NAME, --kill-all): docker build --target kill.
FROM scratch AS kill
ARG TARGETARCH
COPY --from=build /out-kill/${TARGETARCH:-amd64}/ /
ENTRYPOINT ["/proa"]

# proa on distroless/static (CA certificates, /etc/passwd with a nonroot user, tzdata): docker build --target
# distroless. proa itself needs none of them; this suits images that are proa plus a static program.
FROM gcr.io/distroless/static-debian12:nonroot AS distroless
ARG TARGETARCH
COPY --from=build /out/${TARGETARCH:-amd64}/ /
ENTRYPOINT ["/proa"]

# The default: FROM scratch, only /proa and its licenses.
FROM scratch
ARG TARGETARCH
COPY --from=build /out/${TARGETARCH:-amd64}/ /
ENTRYPOINT ["/proa"]
