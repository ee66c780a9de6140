# ChatGate container image.
#   podman build --format docker -t chatgate .        (or: docker build -t chatgate .)
#   docker run -d -p 8080:8080 -v chatgate-data:/var/lib/chatgate -e OLLAMA_URL=http://gpu1:11434 chatgate
# Stages: deps (all dependencies, cached on the lockfile alone), build (TypeScript), prod-deps
# (production dependencies only) and the runtime image, which has no compiler and no dev tools.
ARG NODE_IMAGE=node:20-slim

FROM ${NODE_IMAGE} AS deps
# better-sqlite3 compiles from source where its prebuilt binary cannot be downloaded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# A build host behind a TLS-inspecting proxy passes its CA bundle here (with the file mounted
# read-only into the build); it is never copied into an image.
ARG NODE_EXTRA_CA_CERTS
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` (tsc) needs src/, which comes later;
# better-sqlite3's install script is then run on its own, against the node headers the base
# image ships (<prefix>/include/node) instead of downloading them.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")" \
 && if [ -f "$prefix/include/node/node.h" ]; then export npm_config_nodedir="$prefix"; fi \
 && npm rebuild better-sqlite3

FROM deps AS build
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM deps AS prod-deps
# Only better-sqlite3's compiled binding is needed at run time, not its sources and objects.
RUN npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && cd node_modules/better-sqlite3 \
 && rm -rf deps src build/deps build/Release/obj build/Release/obj.target \
 && find /app/node_modules -type d -empty -delete

FROM ${NODE_IMAGE}
# The non-root user may bind 80 and 443 (ACME HTTP-01 and HTTPS): a file capability on the node
# binary. The container must keep NET_BIND_SERVICE (Docker's default set; after --cap-drop ALL
# add it back, or node cannot start); no-new-privileges and a read-only root are fine.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f "$(command -v node)")" \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/chatgate /var/lib/chatgate/tls \
 && chown -R node:node /var/lib/chatgate \
 && chmod -R 0700 /var/lib/chatgate
ENV NODE_ENV=production \
    CHATGATE_CONFIG=/etc/chatgate/chatgate.yaml \
    CHATGATE_HEALTH_URL=http://127.0.0.1:8080/healthz
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY admin-ui ./admin-ui
COPY package.json docker/healthcheck.cjs ./
COPY docker/chatgate.yaml /etc/chatgate/chatgate.yaml
# Config (read-only is fine) and the store: SQLite, generated secrets, certificates (tls/, a
# volume of its own in docker/compose.yaml: created here so it belongs to the node user).
VOLUME ["/etc/chatgate", "/var/lib/chatgate"]
USER node
# 80/443 with TLS (tls.mode acme: HTTP-01 and redirects on 80), 8080 plain HTTP (the default config).
EXPOSE 80 443 8080
# No curl in the image: node asks $CHATGATE_HEALTH_URL (docker/healthcheck.cjs says how).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "/app/healthcheck.cjs"]
# ChatGate finishes open streams and flushes usage records on SIGTERM, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve"]
