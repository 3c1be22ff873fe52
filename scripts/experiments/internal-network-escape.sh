#!/usr/bin/env bash
# Security property 1 experiment: can a container on a per-session `--internal` bridge network
# reach services listening on the Docker host? Measured on the real engine, for four ways of
# creating the network. Only this machine's own addresses and the experiment's own containers are
# ever contacted.
#
#   V0  --internal                                   (what DESIGN.md warns about)
#   V1  --internal + inhibit_ipv4=true               (the bridge gets no IPv4 address)
#   V2  --internal + inhibit_ipv4=true + bridge.name + iptables/ip6tables INPUT -i NAME+ -j DROP
#   V3  --internal + bridge.name + INPUT DROP        (no inhibit_ipv4)
#
# For each: the sandbox (.3) probes the peer container (.2, must stay reachable), the network's
# .1 and every IPv4 address of this machine, over TCP, as uid 10001 with all capabilities dropped
# (the sandbox settings) and as root with Docker's default capabilities. Then, to model a
# container that can forge link-layer frames (NET_RAW) or set neighbours (NET_ADMIN), a permanent
# neighbour entry for .1 -> the bridge's MAC is set from the host with nsenter and the container
# sends UDP datagrams to the host's addresses, and (with IPv6 re-enabled in its namespace) TCP to
# the bridge's IPv6 link-local address.
#
# Needs: root, a running dockerd, the image airlock-base:local (scripts/build-base.sh), nsenter,
# iptables/ip6tables. Cleans up every container, network, firewall rule and process it made.
# Exit status: 0 when V2 blocks everything and keeps .3 -> .2 working, 1 otherwise.
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/sbin:${PATH}"

IMAGE="${AIRLOCK_PROBE_IMAGE:-airlock-base:local}"
PREFIX="10.213.255.248" # a /29 at the end of 10.213.0.0/16, away from per-session allocations
SUBNET="${PREFIX}/29"
GW="10.213.255.249"
PEER="10.213.255.250"
SANDBOX="10.213.255.251"
TAG="p1x$$"
BR_PREFIX="alp1${$}"
BR_PREFIX="${BR_PREFIX:0:11}" # bridge names are at most 15 characters: prefix + "v0".."v3"
WORK="$(mktemp -d /tmp/airlock-p1.XXXXXX)"
SERVER_PID=""
RULES=()

log() { printf '%s\n' "$*"; }
cleanup() {
  set +e
  docker rm -f "${TAG}-peer" "${TAG}-sandbox" "${TAG}-inj" >/dev/null 2>&1
  for v in v0 v1 v2 v3; do docker network rm "${TAG}-${v}" >/dev/null 2>&1; done
  for r in "${RULES[@]}"; do
    read -r tool chain iface <<<"${r}"
    "${tool}" -D "${chain}" -i "${iface}" -j DROP 2>/dev/null
  done
  [[ -n "${SERVER_PID}" ]] && kill "${SERVER_PID}" 2>/dev/null
  rm -rf "${WORK}"
}
trap cleanup EXIT

[[ "$(id -u)" -eq 0 ]] || { log "run as root"; exit 2; }
docker image inspect "${IMAGE}" >/dev/null 2>&1 || { log "image ${IMAGE} missing: run scripts/build-base.sh"; exit 2; }

# Host services on free ports: HTTP on 0.0.0.0 and on [::], and a UDP listener that logs datagrams.
cat >"${WORK}/servers.mjs" <<'EOF'
import http from 'node:http';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { once } from 'node:events';
const [portsFile, udpLog] = process.argv.slice(2);
const answer = (_req, res) => res.end('host service\n');
const v4 = http.createServer(answer).listen(0, '0.0.0.0');
const v6 = http.createServer(answer).listen({ port: 0, host: '::', ipv6Only: true });
const u = dgram.createSocket('udp4');
u.on('message', (msg, from) => fs.appendFileSync(udpLog, `${from.address} ${msg}\n`));
u.bind(0, '0.0.0.0');
await Promise.all([once(v4, 'listening'), once(v6, 'listening'), once(u, 'listening')]);
fs.writeFileSync(portsFile, `${v4.address().port} ${v6.address().port} ${u.address().port}\n`);
EOF
: >"${WORK}/udp.log"
node "${WORK}/servers.mjs" "${WORK}/ports" "${WORK}/udp.log" &
SERVER_PID=$!
for _ in $(seq 1 50); do [[ -s "${WORK}/ports" ]] && break; sleep 0.1; done
read -r TCP_PORT TCP6_PORT UDP_PORT <"${WORK}/ports"

mapfile -t HOST_ADDRS < <(ip -4 -o addr show | awk '$2 != "lo" {split($4, a, "/"); print a[1]}' | grep -v '^10\.213\.' | sort -u)
# Self-check: the host services answer on loopback and every host address, so "blocked" below
# means the network stopped the connection, not that nothing was listening.
for a in 127.0.0.1 "${HOST_ADDRS[@]}"; do
  [[ "$(curl -s --noproxy '*' -m 3 -o /dev/null -w '%{http_code}' "http://${a}:${TCP_PORT}/")" == "200" ]] ||
    { log "self-check failed: the host service does not answer on ${a}:${TCP_PORT}"; exit 2; }
done
[[ "$(curl -s -g --noproxy '*' -m 3 -o /dev/null -w '%{http_code}' "http://[::1]:${TCP6_PORT}/")" == "200" ]] ||
  { log "self-check failed: the host service does not answer on [::1]:${TCP6_PORT}"; exit 2; }
log "host services: tcp ${TCP_PORT} on 0.0.0.0, tcp ${TCP6_PORT} on [::], udp ${UDP_PORT} on 0.0.0.0; answering on 127.0.0.1 ${HOST_ADDRS[*]}"
log "engine: docker $(docker version --format '{{.Server.Version}}'); host IPv4 addresses: ${HOST_ADDRS[*]}"

cat >"${WORK}/probe.sh" <<'EOF'
# $1 = peer, rest = host targets (addr:port)
peer="$1"; shift
code=$(curl -s --noproxy '*' --connect-timeout 3 -m 5 -o /dev/null -w '%{http_code}' "http://${peer}:8080/")
echo "peer ${peer}:8080 ${code}"
for t in "$@"; do
  code=$(curl -s --noproxy '*' --connect-timeout 3 -m 5 -o /dev/null -w '%{http_code}' "http://${t}/")
  echo "host ${t} ${code}"
done
EOF

verdict() { [[ "$1" == "200" ]] && echo "REACHED" || echo "blocked"; }
V2_OK=1

run_variant() {
  local v="$1"
  shift
  local net="${TAG}-${v}" br="${BR_PREFIX}${v}"
  log ""
  log "=== ${v}: docker network create --internal --subnet ${SUBNET} --gateway ${GW} $*"
  docker network create --internal --subnet "${SUBNET}" --gateway "${GW}" "$@" "${net}" >/dev/null
  local actual_br
  actual_br="$(docker network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "${net}")"
  [[ -n "${actual_br}" ]] || actual_br="br-$(docker network inspect -f '{{.Id}}' "${net}" | cut -c1-12)"
  log "bridge ${actual_br}: $(ip -o addr show "${actual_br}" 2>/dev/null | awk '{print $3, $4}' | tr '\n' ' ')"
  if [[ "${v}" == "v2" || "${v}" == "v3" ]]; then
    for tool in iptables ip6tables; do
      "${tool}" -I INPUT -i "${BR_PREFIX}+" -j DROP
      RULES+=("${tool} INPUT ${BR_PREFIX}+")
    done
    log "host firewall: iptables -I INPUT -i ${BR_PREFIX}+ -j DROP; ip6tables -I INPUT -i ${BR_PREFIX}+ -j DROP"
  fi

  docker run -d --name "${TAG}-peer" --network "${net}" --ip "${PEER}" "${IMAGE}" \
    sh -c 'echo ok > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp' >/dev/null
  local targets=("${GW}:${TCP_PORT}")
  for a in "${HOST_ADDRS[@]}"; do targets+=("${a}:${TCP_PORT}"); done

  log "sandbox route table: $(docker run --rm --network "${net}" --ip "${SANDBOX}" "${IMAGE}" ip route | tr '\n' ';')"
  for mode in sandbox root; do
    local opts=(--cap-drop ALL --security-opt no-new-privileges -u 10001)
    [[ "${mode}" == "root" ]] && opts=()
    while read -r kind target code; do
      log "  [${mode}] ${kind} ${target}: $(verdict "${code}") (${code})"
      if [[ "${v}" == "v2" ]]; then
        if [[ "${kind}" == "peer" && "${code}" != "200" ]] || [[ "${kind}" == "host" && "${code}" == "200" ]]; then V2_OK=0; fi
      fi
    done < <(docker run --rm --network "${net}" --ip "${SANDBOX}" "${opts[@]}" \
      -v "${WORK}/probe.sh:/probe.sh:ro" "${IMAGE}" sh /probe.sh "${PEER}" "${targets[@]}")
  done

  # Forged-neighbour injection (models NET_RAW/NET_ADMIN in the container).
  docker run -d --name "${TAG}-inj" --network "${net}" --ip "${SANDBOX}" "${IMAGE}" sleep 60 >/dev/null
  local pid mac br6
  pid="$(docker inspect -f '{{.State.Pid}}' "${TAG}-inj")"
  mac="$(cat "/sys/class/net/${actual_br}/address")"
  nsenter -t "${pid}" -n ip neigh replace "${GW}" lladdr "${mac}" dev eth0 nud permanent
  : >"${WORK}/udp.log"
  docker exec -e P="${UDP_PORT}" "${TAG}-inj" node -e '
    const d = require("dgram").createSocket("udp4"); const hosts = process.argv.slice(1); let n = 0;
    for (const h of hosts) d.send("from-sandbox-to-" + h, Number(process.env.P), h, () => { if (++n === hosts.length) d.close(); });' \
    "${HOST_ADDRS[@]}" "${GW}"
  sleep 1
  if [[ -s "${WORK}/udp.log" ]]; then
    log "  [forged neighbour] UDP datagrams DELIVERED to host services: $(tr '\n' ';' <"${WORK}/udp.log")"
    [[ "${v}" == "v2" ]] && V2_OK=0
  else
    log "  [forged neighbour] UDP datagrams to ${HOST_ADDRS[*]} ${GW}: none delivered"
  fi
  local code
  code="$(docker exec "${TAG}-inj" curl -s --connect-timeout 3 -o /dev/null -w '%{http_code}' "http://${HOST_ADDRS[0]}:${TCP_PORT}/" || true)"
  log "  [forged neighbour] TCP ${HOST_ADDRS[0]}:${TCP_PORT}: $(verdict "${code}") (${code})"
  [[ "${v}" == "v2" && "${code}" == "200" ]] && V2_OK=0
  # IPv6: Docker disables IPv6 in the container (disable_ipv6=1); re-enable it from the host to
  # see whether the bridge's link-local address leads to host services bound on [::].
  br6="$(ip -6 -o addr show dev "${actual_br}" scope link 2>/dev/null | awk '{split($4, a, "/"); print a[1]}' | head -n1)"
  if [[ -n "${br6}" ]]; then
    code="$(docker exec "${TAG}-inj" curl -s -g --connect-timeout 3 -o /dev/null -w '%{http_code}' "http://[${br6}%eth0]:${TCP6_PORT}/" || true)"
    log "  [ipv6 as shipped] TCP [${br6}]:${TCP6_PORT}: $(verdict "${code}") (${code})"
    nsenter -t "${pid}" -n sysctl -q -w net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.eth0.disable_ipv6=0
    sleep 2.5 # duplicate address detection
    code="$(docker exec "${TAG}-inj" curl -s -g --connect-timeout 3 -o /dev/null -w '%{http_code}' "http://[${br6}%eth0]:${TCP6_PORT}/" || true)"
    log "  [ipv6 re-enabled in container] TCP [${br6}]:${TCP6_PORT}: $(verdict "${code}") (${code})"
    [[ "${v}" == "v2" && "${code}" == "200" ]] && V2_OK=0
  else
    log "  [ipv6] bridge has no IPv6 link-local address"
  fi

  docker rm -f "${TAG}-peer" "${TAG}-inj" >/dev/null
  docker network rm "${net}" >/dev/null
  for r in "${RULES[@]}"; do
    read -r tool chain iface <<<"${r}"
    "${tool}" -D "${chain}" -i "${iface}" -j DROP
  done
  RULES=()
}

run_variant v0
run_variant v1 -o com.docker.network.bridge.inhibit_ipv4=true
run_variant v2 -o com.docker.network.bridge.inhibit_ipv4=true -o "com.docker.network.bridge.name=${BR_PREFIX}v2"
run_variant v3 -o "com.docker.network.bridge.name=${BR_PREFIX}v3"

log ""
if [[ "${V2_OK}" -eq 1 ]]; then
  log "RESULT: V2 (inhibit_ipv4 + named bridge + INPUT DROP on the bridge name, v4 and v6) blocks every host address; sandbox -> peer works"
  exit 0
fi
log "RESULT: V2 did NOT block everything (see above)"
exit 1
