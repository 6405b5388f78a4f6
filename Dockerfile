# syntax=docker/dockerfile:1
# Multi-stage build: compile with dev dependencies, ship only production ones.
# The image runs in production mode: it needs DATABASE_URL, a master keyring and
# one JWT verification key (see docs/configuration.md); it listens on 0.0.0.0:50051,
# which needs TLS (SECRETS_TLS_CERT / SECRETS_TLS_KEY) or SECRETS_ALLOW_PLAINTEXT=1
# behind a mesh that terminates mTLS.

# The SDK is a workspace package (packages/client) the server imports its contract
# from: npm ci links it into node_modules, so its package.json comes first and its
# built dist/ goes into the image beside the server's.
FROM node:20-bookworm-slim AS build
# pkcs11js, the HSM key provider's binding, compiles a native addon at install: node-gyp needs these.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/client/package.json ./packages/client/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json buf.yaml buf.gen.yaml ./
COPY proto ./proto
COPY packages/client ./packages/client
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS deps
# pkcs11js, the HSM key provider's binding, compiles a native addon at install: node-gyp needs these.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/client/package.json ./packages/client/
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    SECRETS_GRPC_ADDR=0.0.0.0:50051 \
    SECRETS_DATA_DIR=/tmp/secrets-data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/packages/client/dist ./packages/client/dist
COPY package.json ./
COPY packages/client/package.json ./packages/client/
# The unprivileged "node" user of the base image (uid 1000); nothing in /app is writable by it.
USER node
EXPOSE 50051
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/main.js"]
