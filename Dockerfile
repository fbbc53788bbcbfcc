# syntax=docker/dockerfile:1
#
# The tsmesh image: one image for the control plane (`tsmesh control-plane`),
# the sidecar (`tsmesh proxy`) and the init container (`tsmesh init`, which
# needs iptables). The entrypoint is `tsmesh`; Kubernetes passes the
# subcommand as args.
#
#   docker build -t ghcr.io/tsmesh/tsmesh:$(node -p 'require("./package.json").version') .
#
# Who runs as whom (set by the pod specs; the image's default user is non-root):
#   control plane  uid 65532 (manifests/control-plane.yaml)
#   proxy          uid 1337, whose traffic iptables never redirects (DESIGN.md)
#   init           uid 0 with NET_ADMIN and NET_RAW only, to install the rules
# Everything in /opt/tsmesh is owned by root and world-readable, so each of
# them can run it and none can change it.

ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: compile TypeScript to dist/ -------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts: the package's own `prepare` would build before the
# sources are here, and koffi finds its prebuilt binary at run time.
RUN npm ci --ignore-scripts --no-audit --no-fund
# The sources: .dockerignore keeps tests, benchmarks and local files out;
# tsconfig.build.json says which folders are compiled.
COPY . .
RUN npm run build

# --- production dependencies only -------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# --- runtime ----------------------------------------------------------------
FROM ${NODE_IMAGE}
# iptables: iptables-nft-* and iptables-legacy-* (save and restore, IPv4 and
# IPv6) for `tsmesh init`, which uses whichever backend the node already uses.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 tsmesh \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin tsmesh
WORKDIR /opt/tsmesh
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# package.json: the version (recorded in tsmesh.io/status, the default image
# tag); manifests/: what `tsmesh install` applies.
COPY package.json ./
COPY manifests ./manifests
RUN chmod 0755 dist/cli/main.js \
 && ln -s /opt/tsmesh/dist/cli/main.js /usr/local/bin/tsmesh \
 && tsmesh --help >/dev/null
ENV NODE_ENV=production
LABEL org.opencontainers.image.title="tsmesh" \
      org.opencontainers.image.description="A service mesh for Kubernetes written in TypeScript: control plane, sidecar proxy and init container" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
ENTRYPOINT ["tsmesh"]
CMD ["--help"]
