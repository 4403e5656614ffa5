# l7warden image: build with the toolchain (re2 compiles natively), run without it.
# Current Node LTS (24); the code also runs on Node 20/22 (package.json engines).
# Build stage and runtime stage use the same Node image, so re2's native addon
# matches the runtime's ABI.
ARG NODE_VERSION=24
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# Dependencies first (their layer survives source changes; re2 takes ~1 min to
# compile). --ignore-scripts skips `prepare` (needs src/); re2's build runs explicitly.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts && npm rebuild re2
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# The demo configuration; real deployments mount theirs over /app/config and the
# certificates over /app/certs (the loader reads certs/ beside the config dir).
COPY config ./config
VOLUME ["/app/config", "/app/certs"]
# Never root. Files are read-only for this user; a flow log file needs a writable
# mount (e.g. flowLog.file: /var/log/l7warden/flows.json on a volume).
USER node
EXPOSE 8000 9901
# SIGTERM drains (limits.drainTimeoutMs, 15 s by default): give `docker stop` more
# than that (docker stop -t 20 / compose stop_grace_period: 20s / k8s
# terminationGracePeriodSeconds), or Docker's 10 s default kills in-flight requests.
STOPSIGNAL SIGTERM
# Liveness on the admin address (spec.admin.address must be port 9901 in the image).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:9901/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["run", "--config", "config"]
