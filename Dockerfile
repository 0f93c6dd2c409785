# thunderctl in a container: a static binary on a distroless base, run as a
# non-root user. `docker build -t thunderyurts .`; contrib/docker-compose.yml
# starts a whole cluster with it (docs/runbook.md, "Trying it in Docker").

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The go command stamps the git commit into the binary (thunderctl version)
# when the context is a git checkout it can read, and builds without it
# otherwise (a worktree's .git file points outside the context).
RUN if git rev-parse HEAD >/dev/null 2>&1; then vcs=true; else vcs=false; fi; \
    CGO_ENABLED=0 go build -trimpath -buildvcs=$vcs -ldflags="-s -w" -o /out/thunderctl ./thunderctl \
    && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/thunderctl /usr/local/bin/thunderctl
# The data node's store; a volume mounted here starts owned by nonroot.
COPY --from=build --chown=65532:65532 /out/data /var/lib/thunderyurts
USER nonroot:nonroot
VOLUME ["/var/lib/thunderyurts"]
# 7000: coordinator, 7100: data node, 7080/7180: /metrics, /healthz, /readyz.
EXPOSE 7000 7080 7100 7180
ENTRYPOINT ["/usr/local/bin/thunderctl"]
CMD ["help"]
