# syntax=docker/dockerfile:1

# leadflow's container image: one static binary on distroless, running as
# a non-root user. Build from the repository root:
#
#	docker build -t leadflow:latest .
#
# The builder's Go matches the go line of go.mod (1.26); when the image's
# patch release is older, GOTOOLCHAIN=auto fetches the exact one.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/leadflow ./cmd/leadflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/leadflow /leadflow
# Inside a container /healthz and /readyz must be reachable from outside the
# process's own loopback.
ENV LEADFLOW_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/leadflow"]
CMD ["serve"]
