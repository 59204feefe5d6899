# breakerbox container image.
#   build stage:   the project's own set-up script (build packages only) and a Release build of the two
#                  programs; the test suite runs in CI on the same commit (scripts/test.sh, which also
#                  builds this image and checks it end to end through docker/build-and-run.sh)
#   runtime stage: debian:bookworm-slim with only the runtime libraries, a non-root user, the binary and
#                  the container config at /etc/breakerbox/breakerbox.yaml (mount your own over it)
#   docker/build-and-run.sh builds it with podman (no Docker daemon needed) and checks it end to end.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBREAKERBOX_BUILD_TESTS=OFF -DBREAKERBOX_BUILD_BENCH=OFF \
 && cmake --build build -j "$(nproc)" --target breakerbox breakerbox-test-upstream \
 && build/breakerbox --version \
 && strip build/breakerbox build/breakerbox-test-upstream

# The controllable upstream, for the compose example's flaky service.
FROM debian:bookworm-slim AS test-upstream
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/breakerbox-test-upstream /usr/local/bin/breakerbox-test-upstream
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/breakerbox-test-upstream"]
CMD ["--listen", "0.0.0.0:7000", "--threads", "2"]

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libyaml-cpp0.7 libprometheus-cpp-core1.0 libmimalloc2.0 \
    libssl3 ca-certificates libsqlite3-0 libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 breakerbox \
 && useradd --system --uid 10001 --gid breakerbox --no-create-home --shell /usr/sbin/nologin breakerbox \
 && install -d -m 0700 -o breakerbox -g breakerbox /var/lib/breakerbox
COPY --from=build /src/build/breakerbox /usr/local/bin/breakerbox
COPY docker/breakerbox.yaml /etc/breakerbox/breakerbox.yaml
# /var/lib/breakerbox: the queue fallback's database (queue_store.path), private to the user. Mount a
# persistent volume there for durability across containers (docs/queue.md).
USER 10001:10001
# 8080: the shared data listener; 9901: the admin listener (/live, /ready, /health/circuits, /metrics)
EXPOSE 8080 9901
# bash's /dev/tcp keeps curl out of the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /live HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGTERM drains: stop accepting, finish in-flight requests (limits.drain_timeout), then exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/breakerbox"]
CMD ["--config", "/etc/breakerbox/breakerbox.yaml"]
