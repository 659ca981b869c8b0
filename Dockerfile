# syntax=docker/dockerfile:1

# Build stage. cgo is on so the SQLite backend (mattn/go-sqlite3) can be
# compiled in. The binary is still linked fully statically (pure-Go DNS and
# user lookups, no SQLite extension loading), so it runs on a libc-free image.
FROM golang:1.26 AS build
# Fetch the exact toolchain go.mod asks for if this image's Go is older.
ENV GOTOOLCHAIN=auto
WORKDIR /src

# Module downloads get their own layer, rebuilt only when go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
ENV CGO_ENABLED=1
RUN go build -trimpath \
      -tags netgo,osusergo,sqlite_omit_load_extension \
      -ldflags '-s -w -linkmode external -extldflags "-static"' \
      -o /out/messages ./cmd/messages \
 && mkdir -p /out/data

# Runtime stage: a static binary, CA certificates and tzdata, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/messages /usr/local/bin/messages
# The data directory must exist, owned by the unprivileged user, before a
# volume is mounted on it so that a fresh named volume inherits the ownership.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
VOLUME /data
USER 65532:65532
# Every interface, so that the published port reaches the server. In open
# mode (no JWT_SECRET or JWT_JWKS) the server refuses to start on it unless
# INSECURE_OPEN=true says the open server is meant: give it a key instead.
ENV LISTEN_ADDR=:3000
# Without a DATABASE_URL the server keeps its SQLite file in the volume.
ENV DATABASE_URL=sqlite:/data/messages.db
EXPOSE 3000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/messages"]
