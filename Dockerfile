# Airlock images: one file, two targets (see docs/images.md).
#
#   gateway  the egress gateway: node /app/dist/cli/main.js gateway, non-root (uid 10002), port 3128
#   sandbox  a session's sandbox: curl, git, node, python3 + requests, busybox tools; user agent (uid 10001)
#
# The build context is a staged directory (made by src/images/build.ts, `airlock images build`)
# holding dist/ (built on the host), policies/, package.json, package-lock.json and production-only
# node_modules (as node_modules.tar), so nothing here needs the network.
#
# BASE_IMAGE: online builds use the default below; offline builds pass airlock-base:local, made
# from this machine's own files by scripts/build-base.sh, which already holds every tool.
ARG BASE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS gateway
# Users are appended to /etc/passwd directly: the offline base has no useradd.
RUN set -eu; \
    command -v node >/dev/null || { echo "BASE_IMAGE has no node" >&2; exit 1; }; \
    grep -q '^airlock:' /etc/group || echo 'airlock:x:10002:' >>/etc/group; \
    grep -q '^airlock:' /etc/passwd || echo 'airlock:x:10002:10002:Airlock gateway:/app:/bin/false' >>/etc/passwd
ENV NODE_ENV=production
WORKDIR /app
EXPOSE 3128
# Numeric, so that Kubernetes' runAsNonRoot can verify it. The app files stay owned by root:
# the gateway cannot change its own code or default policies.
USER 10002:10002
CMD ["node", "/app/dist/cli/main.js", "gateway"]
# Most often changed last, so that a rebuild after `npm run build` redoes one layer.
COPY package.json package-lock.json ./
# A local tar file is unpacked by ADD: production node_modules, packed by src/images/build.ts.
ADD node_modules.tar ./
COPY policies ./policies
COPY dist ./dist

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS sandbox
# Online bases lack curl/git/busybox/python3-requests: install them. The offline base has them.
# busybox applets (wget, nc, ip, vi, ...) are linked only where no real command exists.
# No set-uid/set-gid programs: nothing in a sandbox may gain privileges.
RUN set -eu; \
    if ! command -v curl >/dev/null || ! command -v git >/dev/null || ! command -v busybox >/dev/null \
        || ! python3 -c 'import requests' >/dev/null 2>&1; then \
      apt-get update; \
      apt-get install -y --no-install-recommends curl git busybox ca-certificates python3-minimal python3-requests; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    bb="$(command -v busybox)"; \
    for applet in $("$bb" --list | grep -v -x linuxrc); do \
      command -v "$applet" >/dev/null 2>&1 || ln -s "$bb" "/usr/local/bin/$applet"; \
    done; \
    grep -q '^agent:' /etc/group || echo 'agent:x:10001:' >>/etc/group; \
    grep -q '^agent:' /etc/passwd || echo 'agent:x:10001:10001:Airlock sandbox agent:/home/agent:/bin/bash' >>/etc/passwd; \
    [ "$(id -u agent)" = 10001 ] || { echo "user agent exists with uid $(id -u agent), expected 10001" >&2; exit 1; }; \
    mkdir -p /home/agent; \
    chown 10001:10001 /home/agent; \
    chmod 0755 /home/agent; \
    find / -xdev -type f -perm /6000 -exec chmod ug-s {} +; \
    node --version; curl --version | head -n1; git --version; python3 -c 'import requests; print("requests", requests.__version__)'
ENV HOME=/home/agent
WORKDIR /home/agent
USER 10001:10001
CMD ["sleep", "infinity"]
