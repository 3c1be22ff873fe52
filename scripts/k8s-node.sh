#!/usr/bin/env bash
# A one-node Kubernetes cluster on this machine, from real upstream components (issue 16):
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler   control plane (host processes)
#   containerd (Debian's, its OWN instance: config, root, state, socket) + runc   CRI runtime
#   kubelet (cgroup v1, cgroupfs driver, failCgroupV1: false)                      the node
#   CNI: bridge + host-local + loopback + portmap + firewall (Debian's plugins)    Pod network
#   kube-proxy (iptables mode)                                                     Service VIPs
#   kube-router --run-firewall only                                                NetworkPolicy
#   CoreDNS (a Deployment in kube-system, no upstream forwarding)                   cluster DNS
#
# Every binary comes from scripts/k8s-tools.sh and scripts/k8s-node-tools.sh (built from the Go
# module proxy, cached outside the repository). Images are loaded into the node's containerd
# without a registry: the pause and CoreDNS images are written here as image archives from the
# cached binaries, the project's images (AIRLOCK_K8S_NODE_IMAGES) come from `docker save`.
#
# Usage: scripts/k8s-node.sh up|down|status|env
#   up      bring the node up (idempotent: a Ready node is left as it is); prints KUBECONFIG=...
#           A start failure of a component (not a test assertion) is retried once after `down`.
#   down    stop everything and restore the host: processes, mounts, /var/lib/kubelet,
#           /var/log/pods, kubepods cgroups, iptables chains (KUBE-*, CNI-*), ipsets, sysctls,
#           the CNI bridge and network namespaces, the state directory. Safe to run any time.
#   status  exit 0 when the node is Ready, 3 when nothing runs, 1 when partly up
#   env     print KUBECONFIG=, NODE_IP=, POD_CIDR=, SERVICE_CIDR=, CLUSTER_DNS=, API_CLUSTER_IP=
#   load-images  re-import the images (after scripts/build-images.sh) into the running node
#   kubelet-restart  tests only: stop and start the kubelet (running Pods keep running)
#   enforcer-stop|enforcer-start   tests only: switch NetworkPolicy enforcement off (kube-router
#           stopped and its iptables chains and ipsets removed) and on again
#
# Only one such cluster can run on a machine (fixed host paths: /var/lib/kubelet, kubepods
# cgroups, ports 6443/10250): `up` refuses when another instance's processes are found.
#
# Environment:
#   AIRLOCK_K8S_NODE_DIR     state directory (default /var/lib/airlock-k8s-node)
#   AIRLOCK_K8S_NODE_IP      the node's address (default: the address of the default route's
#                            interface); Pods reach the API server and test upstreams here
#   AIRLOCK_K8S_NODE_IMAGES  docker images to load (default "airlock-gateway:dev airlock-sandbox:dev";
#                            missing ones are skipped with a warning)
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:${PATH}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${AIRLOCK_K8S_NODE_DIR:-/var/lib/airlock-k8s-node}"
RUN=/run/airlock-k8s-node
HOST_RECORD=/run/airlock-k8s-node.host # host state before `up` (sysctls, netns), outlives STATE
PKI="${STATE}/pki"
LOG="${STATE}/log"
NODE_NAME=airlock-node
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
API_CLUSTER_IP=10.96.0.1
CLUSTER_DNS=10.96.0.10
CLUSTER_DOMAIN=cluster.local
BRIDGE=aircni0
API_PORT=6443
ETCD_CLIENT_PORT=12379
ETCD_PEER_PORT=12380
CONTAINERD_SOCK="${RUN}/containerd/containerd.sock"
KUBELET_ROOT=/var/lib/kubelet
IMAGES="${AIRLOCK_K8S_NODE_IMAGES-airlock-gateway:dev airlock-sandbox:dev}"
# sysctls the kubelet (and the pod network) change; `down` writes the recorded values back.
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.conf.all.route_localnet)
# Processes in start order; `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router)

say() { printf '[k8s-node] %s\n' "$*" >&2; }
die() {
  printf '[k8s-node] ERROR: %s\n' "$*" >&2
  exit 1
}
[[ "$(id -u)" -eq 0 ]] || die "run as root (kubelet, containerd, iptables)"

node_ip() {
  if [[ -n "${AIRLOCK_K8S_NODE_IP:-}" ]]; then
    echo "${AIRLOCK_K8S_NODE_IP}"
    return
  fi
  local dev
  dev="$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')"
  [[ -n "${dev}" ]] || die "no default route: set AIRLOCK_K8S_NODE_IP"
  ip -4 -o addr show dev "${dev}" scope global | awk '{split($4, a, "/"); print a[1]; exit}'
}

tools() { # loads the cached binaries' paths (never builds)
  local line out
  out="$(bash "${HERE}/k8s-tools.sh" --paths --with-kubectl)" || die "Kubernetes tools missing: bash scripts/k8s-tools.sh --with-kubectl"
  out+=$'\n'"$(bash "${HERE}/k8s-node-tools.sh" --paths)" || die "node tools missing: bash scripts/k8s-node-tools.sh"
  while IFS= read -r line; do
    if [[ "${line}" == *=* ]]; then export "TOOL_${line%%=*}=${line#*=}"; fi
  done <<<"${out}"
}

kc() { "${TOOL_KUBECTL}" --kubeconfig "${STATE}/admin.conf" "$@"; }

pid_of() { # pid_of COMPONENT -> pid when running
  local f="${RUN}/$1.pid" pid
  [[ -s "${f}" ]] || return 1
  pid="$(cat "${f}")"
  kill -0 "${pid}" 2>/dev/null || return 1
  echo "${pid}"
}

start() { # start NAME BIN ARGS... (own session, survives this script; log in $LOG/NAME.log)
  local name="$1"
  shift
  setsid "$@" >>"${LOG}/${name}.log" 2>&1 </dev/null &
  echo "$!" >"${RUN}/${name}.pid"
}

# wait_for DESCRIPTION SECONDS COMPONENT CMD...: polls CMD (every 0.5 s) until it succeeds; fails
# early when COMPONENT's process has exited, showing the end of its log.
wait_for() {
  local what="$1" secs="$2" comp="$3" deadline
  shift 3
  deadline=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "${comp}" ]] && ! pid_of "${comp}" >/dev/null; then
      tail -n 25 "${LOG}/${comp}.log" >&2 || true
      die "${comp} exited while waiting for ${what}"
    fi
    if [[ $(date +%s) -ge ${deadline} ]]; then
      [[ -z "${comp}" ]] || tail -n 25 "${LOG}/${comp}.log" >&2 || true
      die "timed out after ${secs} s waiting for ${what}"
    fi
    sleep 0.5
  done
}

# --- PKI -------------------------------------------------------------------------------------------
cert() { # cert NAME CN [O] [SANS]: EC P-256 key + certificate signed by the cluster CA
  local name="$1" cn="$2" org="${3:-}" sans="${4:-}" subj
  subj="/CN=${cn}"
  [[ -z "${org}" ]] || subj="/O=${org}${subj}"
  openssl ecparam -name prime256v1 -genkey -noout -out "${PKI}/${name}.key.ec" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "${PKI}/${name}.key.ec" -out "${PKI}/${name}.key"
  rm -f "${PKI}/${name}.key.ec"
  openssl req -new -key "${PKI}/${name}.key" -subj "${subj}" -out "${PKI}/${name}.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [[ -z "${sans}" ]] || echo "subjectAltName=${sans}"
  } >"${PKI}/${name}.ext"
  openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" \
    -CAcreateserial -days 7 -sha256 -extfile "${PKI}/${name}.ext" -out "${PKI}/${name}.crt" 2>/dev/null
  rm -f "${PKI}/${name}.csr" "${PKI}/${name}.ext"
}

kubeconfig() { # kubeconfig FILE CERTNAME SERVER
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: airlock-node
    cluster:
      server: $3
      certificate-authority-data: $(base64 -w0 <"${PKI}/ca.crt")
users:
  - name: $2
    user:
      client-certificate-data: $(base64 -w0 <"${PKI}/$2.crt")
      client-key-data: $(base64 -w0 <"${PKI}/$2.key")
contexts:
  - name: airlock-node
    context: {cluster: airlock-node, user: $2}
current-context: airlock-node
EOF
  chmod 0600 "$1"
}

make_pki() {
  local ip="$1"
  mkdir -p "${PKI}"
  openssl ecparam -name prime256v1 -genkey -noout -out "${PKI}/ca.key" 2>/dev/null
  openssl req -x509 -new -key "${PKI}/ca.key" -subj "/CN=airlock-node-ca" -days 7 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "${PKI}/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.${CLUSTER_DOMAIN},DNS:localhost,IP:127.0.0.1,IP:${API_CLUSTER_IP},IP:${ip}"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin airlock-node-admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert kubelet "system:node:${NODE_NAME}" system:nodes
  cert kubelet-serving "${NODE_NAME}" "" "DNS:${NODE_NAME},IP:${ip},IP:127.0.0.1"
  cert kube-proxy system:kube-proxy
  cert kube-router airlock:kube-router
  openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "${PKI}/sa.key"
  openssl ec -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub" 2>/dev/null
  local server="https://127.0.0.1:${API_PORT}"
  kubeconfig "${STATE}/admin.conf" admin "${server}"
  kubeconfig "${STATE}/controller-manager.conf" controller-manager "${server}"
  kubeconfig "${STATE}/scheduler.conf" scheduler "${server}"
  kubeconfig "${STATE}/kubelet.conf" kubelet "${server}"
  kubeconfig "${STATE}/kube-proxy.conf" kube-proxy "${server}"
  kubeconfig "${STATE}/kube-router.conf" kube-router "${server}"
}

# --- images ----------------------------------------------------------------------------------------
# image_archive OUT NAME:TAG BINARY ENTRYPOINT...: a docker-archive (the `docker save` format,
# which `ctr images import` reads) with one layer holding BINARY at /<basename>; no registry needed.
image_archive() {
  python3 - "$@" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, ref, binary, *entry = sys.argv[1:]
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as t:
    for d in ("etc", "tmp"):
        i = tarfile.TarInfo(d); i.type = tarfile.DIRTYPE; i.mode = 0o1777 if d == "tmp" else 0o755
        t.addfile(i)
    i = t.gettarinfo(binary, arcname=os.path.basename(binary)); i.uid = i.gid = 0; i.uname = i.gname = ""
    i.mode = 0o755; i.mtime = 0
    with open(binary, "rb") as f:
        t.addfile(i, f)
data = layer.getvalue()
diff = "sha256:" + hashlib.sha256(data).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "config": {"Entrypoint": entry, "WorkingDir": "/"},
                     "rootfs": {"type": "layers", "diff_ids": [diff]}, "history": [{}]}).encode()
cid = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": cid + ".json", "RepoTags": [ref], "Layers": ["layer/layer.tar"]}]).encode()
with tarfile.open(out, "w") as t:
    for name, blob in ((cid + ".json", config), ("layer/layer.tar", data), ("manifest.json", manifest)):
        i = tarfile.TarInfo(name); i.size = len(blob); i.mode = 0o644
        t.addfile(i, io.BytesIO(blob))
PY
}

PAUSE_IMAGE=airlock.local/pause:airlock-1
coredns_image() { echo "airlock.local/coredns:${TOOL_COREDNS_VERSION}"; }

ctr_() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io "$@"; }

load_images() {
  local t0 img missing=()
  t0=$(date +%s)
  image_archive "${STATE}/pause.tar" "${PAUSE_IMAGE}" "${TOOL_PAUSE}" /pause
  image_archive "${STATE}/coredns.tar" "$(coredns_image)" "${TOOL_COREDNS}" /coredns
  ctr_ images import "${STATE}/pause.tar" >/dev/null
  ctr_ images import "${STATE}/coredns.tar" >/dev/null
  rm -f "${STATE}/pause.tar" "${STATE}/coredns.tar"
  local present=()
  for img in ${IMAGES}; do
    if docker image inspect "${img}" >/dev/null 2>&1; then present+=("${img}"); else missing+=("${img}"); fi
  done
  [[ ${#missing[@]} -eq 0 ]] || say "WARNING: docker has no ${missing[*]}: not loaded (scripts/build-images.sh --offline)"
  if [[ ${#present[@]} -gt 0 ]]; then
    docker save "${present[@]}" | ctr_ images import - >/dev/null
  fi
  say "images loaded in $(($(date +%s) - t0)) s: ${PAUSE_IMAGE} $(coredns_image) ${present[*]}"
}

# --- configuration files ---------------------------------------------------------------------------
write_configs() {
  local ip="$1"
  mkdir -p "${STATE}/cni/net.d" "${STATE}/cni/ipam" "${STATE}/containerd" "${RUN}/containerd"
  cat >"${STATE}/containerd/config.toml" <<EOF
# containerd for the airlock node only (not Docker's): own root, state and socket.
version = 2
root = "${STATE}/containerd/root"
state = "${RUN}/containerd/state"
[grpc]
  address = "${CONTAINERD_SOCK}"
[ttrpc]
  address = "${CONTAINERD_SOCK}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${STATE}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without this runc fails "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${STATE}/cni/net.d"
EOF
  # firewall: Docker sets the FORWARD policy to DROP; this plugin accepts the Pods' traffic
  # (kube-router's chains come first and enforce NetworkPolicy).
  cat >"${STATE}/cni/net.d/10-airlock.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "airlock-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "${BRIDGE}", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "${STATE}/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
EOF
  printf 'nameserver %s\n' "${ip}" >"${STATE}/resolv.conf" # Pods with dnsPolicy Default only
  cat >"${STATE}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine is cgroup v1 (hybrid; Docker uses it). kubelet 1.35+ refuses v1 unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${PKI}/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: ${PKI}/kubelet-serving.crt
tlsPrivateKeyFile: ${PKI}/kubelet-serving.key
clusterDomain: ${CLUSTER_DOMAIN}
clusterDNS: [${CLUSTER_DNS}]
resolvConf: ${STATE}/resolv.conf
readOnlyPort: 0
failSwapOn: false
podPidsLimit: 4096
serializeImagePulls: false
# The images were loaded offline and cannot be pulled again: no image garbage collection, and
# no eviction for disk pressure (which would delete images first).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
evictionPressureTransitionPeriod: 10s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
EOF
  cat >"${STATE}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: ${STATE}/kube-proxy.conf}
hostnameOverride: ${NODE_NAME}
clusterCIDR: ${CLUSTER_CIDR}
bindAddress: ${ip}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack limits and route_localnet alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
}

# kube-system objects: kube-router's read-only RBAC and CoreDNS without upstream forwarding.
cluster_manifests() {
  cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "airlock:kube-router"}
rules:
  - apiGroups: [""]
    resources: [namespaces, pods, services, endpoints, nodes]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
  - apiGroups: ["", events.k8s.io]
    resources: [events]
    verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "airlock:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "airlock:kube-router"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "airlock:kube-router"}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loop
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      containers:
        - name: coredns
          image: $(coredns_image)
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
          livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
          resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 128Mi}}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: ${CLUSTER_DNS}
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
EOF
}

# --- host state --------------------------------------------------------------------------------------
record_host() {
  [[ -f "${HOST_RECORD}" ]] && return 0 # recorded by an earlier, unfinished `up`: keep the original
  {
    local s
    for s in "${SYSCTLS[@]}"; do
      if sysctl -n "${s}" >/dev/null 2>&1; then printf 'sysctl %s=%s\n' "${s}" "$(sysctl -n "${s}")"; fi
    done
    if [[ -d /run/netns ]]; then
      find /run/netns -mindepth 1 -maxdepth 1 -name 'cni-*' -printf 'netns %f\n'
    fi
  } >"${HOST_RECORD}.tmp"
  mv "${HOST_RECORD}.tmp" "${HOST_RECORD}"
}

api_ready() { kc get --raw /readyz >/dev/null 2>&1; }
node_ready() {
  [[ "$(kc get node "${NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

any_running() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "${c}" >/dev/null && return 0; done
  return 1
}

cmd_status() {
  local c up=0 total=0
  for c in "${COMPONENTS[@]}"; do
    total=$((total + 1))
    if pid_of "${c}" >/dev/null; then
      up=$((up + 1))
      say "${c}: running (pid $(pid_of "${c}"))"
    else
      say "${c}: not running"
    fi
  done
  if [[ "${up}" -eq 0 ]]; then return 3; fi
  if [[ "${up}" -eq "${total}" ]] && tools 2>/dev/null && node_ready; then
    say "node ${NODE_NAME} Ready"
    return 0
  fi
  return 1
}

cmd_env() {
  printf 'KUBECONFIG=%s\nNODE_NAME=%s\nNODE_IP=%s\nPOD_CIDR=%s\nSERVICE_CIDR=%s\nCLUSTER_DNS=%s\nAPI_CLUSTER_IP=%s\nCLUSTER_DOMAIN=%s\nBRIDGE=%s\nKUBE_ROUTER_PID_FILE=%s\n' \
    "${STATE}/admin.conf" "${NODE_NAME}" "$(node_ip)" "${POD_CIDR}" "${SERVICE_CIDR}" "${CLUSTER_DNS}" \
    "${API_CLUSTER_IP}" "${CLUSTER_DOMAIN}" "${BRIDGE}" "${RUN}/kube-router.pid"
}

start_kubelet() { # start_kubelet NODE_IP
  start kubelet "${TOOL_KUBELET}" --config "${STATE}/kubelet.yaml" --kubeconfig "${STATE}/kubelet.conf" \
    --hostname-override "${NODE_NAME}" --node-ip "$1" --root-dir "${KUBELET_ROOT}" --v 1
}

# kube-router in firewall-only mode: NetworkPolicy through iptables + ipset, nothing else.
start_kube_router() {
  start kube-router env NODE_NAME="${NODE_NAME}" "${TOOL_KUBE_ROUTER}" --kubeconfig "${STATE}/kube-router.conf" \
    --hostname-override "${NODE_NAME}" --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --service-cluster-ip-range "${SERVICE_CIDR}" --metrics-port 0 --health-port 20244
}

up_once() {
  local ip t0
  t0=$(date +%s)
  ip="$(node_ip)"
  [[ -n "${ip}" ]] || die "cannot tell the node's address: set AIRLOCK_K8S_NODE_IP"
  # Another cluster using the fixed host paths/ports (not ours: we found no pid files).
  if pgrep -x kubelet >/dev/null 2>&1 || [[ -d "${KUBELET_ROOT}/pods" ]]; then
    die "a kubelet runs or ${KUBELET_ROOT} exists: another cluster uses this machine (run down first)"
  fi
  record_host
  mkdir -p "${STATE}" "${RUN}" "${LOG}"
  # Bridged Pod-to-Pod traffic must pass iptables (kube-proxy's DNAT, kube-router's filters).
  [[ -d /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || true
  [[ -d /proc/sys/net/bridge ]] || die "no bridge netfilter (/proc/sys/net/bridge): the kernel needs br_netfilter"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  make_pki "${ip}"
  write_configs "${ip}"

  # etcd and containerd first: both need nothing else.
  start etcd "${TOOL_ETCD}" --name airlock-node --data-dir "${STATE}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "airlock-node=http://127.0.0.1:${ETCD_PEER_PORT}" --log-level warn
  start containerd containerd --config "${STATE}/containerd/config.toml"
  wait_for "etcd" 30 etcd curl -fsS "http://127.0.0.1:${ETCD_CLIENT_PORT}/health"
  start kube-apiserver "${TOOL_KUBE_APISERVER}" \
    --etcd-servers "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --bind-address 0.0.0.0 --secure-port "${API_PORT}" --advertise-address "${ip}" \
    --service-cluster-ip-range "${SERVICE_CIDR}" \
    --client-ca-file "${PKI}/ca.crt" --tls-cert-file "${PKI}/apiserver.crt" --tls-private-key-file "${PKI}/apiserver.key" \
    --kubelet-client-certificate "${PKI}/apiserver-kubelet-client.crt" --kubelet-client-key "${PKI}/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer "https://kubernetes.default.svc.${CLUSTER_DOMAIN}" \
    --service-account-key-file "${PKI}/sa.pub" --service-account-signing-key-file "${PKI}/sa.key" \
    --allow-privileged=true --profiling=false
  wait_for "containerd" 30 containerd ctr --address "${CONTAINERD_SOCK}" version
  load_images &
  local images_pid=$!
  # /readyz includes the RBAC bootstrap post-start hook: kube-controller-manager exits when started
  # before the default roles exist.
  wait_for "kube-apiserver /readyz" 90 kube-apiserver api_ready
  start kube-controller-manager "${TOOL_KUBE_CONTROLLER_MANAGER}" --kubeconfig "${STATE}/controller-manager.conf" \
    --authentication-kubeconfig "${STATE}/controller-manager.conf" --authorization-kubeconfig "${STATE}/controller-manager.conf" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "${PKI}/sa.key" --root-ca-file "${PKI}/ca.crt" \
    --cluster-signing-cert-file "${PKI}/ca.crt" --cluster-signing-key-file "${PKI}/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "${CLUSTER_CIDR}" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "${SERVICE_CIDR}"
  start kube-scheduler "${TOOL_KUBE_SCHEDULER}" --kubeconfig "${STATE}/scheduler.conf" \
    --authentication-kubeconfig "${STATE}/scheduler.conf" --authorization-kubeconfig "${STATE}/scheduler.conf" \
    --bind-address 127.0.0.1 --leader-elect=false
  start_kubelet "${ip}"
  start kube-proxy "${TOOL_KUBE_PROXY}" --config "${STATE}/kube-proxy.yaml"
  cluster_manifests >"${STATE}/cluster.yaml"
  wait_for "kube-system manifests applied" 30 kube-apiserver kc apply -f "${STATE}/cluster.yaml"
  # kube-router exits when its Node object does not exist yet.
  wait_for "Node ${NODE_NAME} registered" 60 kubelet kc get node "${NODE_NAME}"
  start_kube_router
  wait "${images_pid}" || die "loading images into the node's containerd failed"
  wait_for "node Ready" 90 kubelet node_ready
  wait_for "kube-router healthy" 60 kube-router curl -fsS http://127.0.0.1:20244/healthz
  wait_for "CoreDNS ready" 90 kubelet kc -n kube-system wait --for=condition=Available deploy/coredns --timeout=5s
  say "node ${NODE_NAME} (${ip}) Ready in $(($(date +%s) - t0)) s"
}

cmd_up() {
  if any_running; then
    tools
    if node_ready; then
      say "already up"
      cmd_env
      return 0
    fi
    say "partly up: taking it down first"
    cmd_down
  fi
  tools
  local attempt
  for attempt in 1 2; do
    if (up_once); then
      cmd_env
      return 0
    fi
    say "bring-up attempt ${attempt} failed (logs: ${LOG}); cleaning up"
    if [[ -d "${LOG}" ]]; then
      mkdir -p /tmp/airlock-logs
      cp -r "${LOG}" "/tmp/airlock-logs/k8s-node-attempt-${attempt}" 2>/dev/null || true
    fi
    cmd_down
  done
  die "the node did not come up (logs copied to /tmp/airlock-logs/k8s-node-attempt-*)"
}

# --- down ------------------------------------------------------------------------------------------------
stop_pid() { # stop_pid PID SECONDS: TERM, then KILL after SECONDS
  local pid="$1" secs="$2" i
  kill -TERM "${pid}" 2>/dev/null || return 0
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "${pid}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.1
  done
}

stop_component() {
  local pid
  if pid="$(pid_of "$1")"; then stop_pid "${pid}" "$2"; fi
  rm -f "${RUN}/$1.pid"
}

# stop_components SECONDS NAME...: TERM to all at once, KILL what is left after SECONDS (the API
# server alone may take 35-60 s to exit after SIGTERM; its state is discarded anyway).
stop_components() {
  local secs="$1" c pid pids=() i
  shift
  for c in "$@"; do
    if pid="$(pid_of "${c}")"; then
      pids+=("${pid}")
      kill -TERM "${pid}" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < secs * 10; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "${pid}" 2>/dev/null && alive=1; done
    [[ "${alive}" -eq 1 ]] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do stop_pid "${pid}" 0; done
  for c in "$@"; do rm -f "${RUN}/${c}.pid"; done
}

# Removes every rule jumping to a KUBE-*/CNI-* chain and every rule kube-router or the CNI plugins put
# into other chains, then flushes and deletes those chains (kube-router's --cleanup-config panics here).
clean_iptables() { # clean_iptables [CHAIN_RE] [SET_RE] (default: every KUBE-*/CNI-* chain, KUBE-* set)
  local chains="${1:-KUBE-|CNI-}" sets="${2:-^(inet6:)?KUBE-|^kube-router}"
  local ipt table rule chain
  for ipt in iptables ip6tables; do
    command -v "${ipt}" >/dev/null || continue
    for table in filter nat mangle raw; do
      "${ipt}" -t "${table}" -S >/dev/null 2>&1 || continue
      while IFS= read -r rule; do
        # -A CHAIN ... : drop rules of foreign chains that reference ours (rule text has no quotes issue:
        # the comments of these rules are single words or are passed back through eval).
        eval "${ipt} -t ${table} -D ${rule#-A }" 2>/dev/null || true
      done < <("${ipt}" -t "${table}" -S | grep -E '^-A ' | grep -vE "^-A (${chains})" |
        grep -E -- "-j (${chains})|-g (${chains})|kube-router|match-set (inet6:)?KUBE-" || true)
      while IFS= read -r chain; do "${ipt}" -t "${table}" -F "${chain}" 2>/dev/null || true; done < <(
        "${ipt}" -t "${table}" -S | sed -n 's/^-N \([^ ]*\)$/\1/p' | grep -E "^(${chains})" || true
      )
      while IFS= read -r chain; do "${ipt}" -t "${table}" -X "${chain}" 2>/dev/null || true; done < <(
        "${ipt}" -t "${table}" -S | sed -n 's/^-N \([^ ]*\)$/\1/p' | grep -E "^(${chains})" || true
      )
    done
  done
  if command -v ipset >/dev/null; then
    local set
    while IFS= read -r set; do ipset destroy "${set}" 2>/dev/null || true; done < <(
      ipset list -n 2>/dev/null | grep -E "${sets}" || true
    )
  fi
}

cmd_down() {
  local t0 c
  t0=$(date +%s)
  # Node side first (kube-router, kube-proxy, kubelet), then the Pods' containers, then containerd.
  stop_components 10 kube-router kube-proxy kubelet
  if pid_of containerd >/dev/null && [[ -S "${CONTAINERD_SOCK}" ]]; then
    local task
    while read -r task _; do
      [[ -n "${task}" && "${task}" != TASK ]] || continue
      ctr_ tasks kill -s SIGKILL "${task}" >/dev/null 2>&1 || true
    done < <(ctr_ tasks ls 2>/dev/null || true)
  fi
  stop_component containerd 10
  # containerd's shims for this instance (their command line names our socket) and anything left in
  # the Pods' cgroups.
  local pid
  for pid in $(pgrep -f -- "-address ${CONTAINERD_SOCK}" || true); do stop_pid "${pid}" 2; done
  local cg
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "${cg}" ]] || continue
    while read -r pid; do kill -KILL "${pid}" 2>/dev/null || true; done < <(find "${cg}" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  stop_components 5 kube-scheduler kube-controller-manager kube-apiserver
  stop_component etcd 10

  # Mounts under the kubelet root, the containerd state and the Pods' network namespaces.
  local m
  while read -r m; do umount -l "${m}" 2>/dev/null || true; done < <(
    awk '{print $2}' /proc/self/mounts | grep -E "^(${KUBELET_ROOT}|${STATE}|${RUN}|/run/netns/cni-)" | sort -r || true
  )
  # Network namespaces the Pods had (not those recorded before `up`).
  if [[ -d /run/netns ]]; then
    local ns
    for ns in /run/netns/cni-*; do
      [[ -e "${ns}" ]] || continue
      grep -qx "netns $(basename "${ns}")" "${HOST_RECORD}" 2>/dev/null || rm -f "${ns}"
    done
  fi
  # The bridge (its veths went with the namespaces).
  if ip link show "${BRIDGE}" >/dev/null 2>&1; then ip link del "${BRIDGE}" || true; fi
  clean_iptables
  # kubepods cgroups, deepest first.
  for cg in /sys/fs/cgroup/*/kubepods; do
    if [[ -d "${cg}" ]]; then find "${cg}" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
  done
  # sysctls as they were before `up`.
  if [[ -f "${HOST_RECORD}" ]]; then
    local key value
    while IFS='=' read -r key value; do
      [[ "${key}" == sysctl\ * ]] || continue
      sysctl -qw "${key#sysctl }=${value}" 2>/dev/null || true
    done <"${HOST_RECORD}"
  fi
  rm -rf "${KUBELET_ROOT}" /var/log/pods /var/log/containers "${STATE}" "${RUN}"
  rm -f "${HOST_RECORD}"
  say "down in $(($(date +%s) - t0)) s"
}

# For tests that show a probe is not vacuous: with kube-router stopped AND its rules removed (they
# outlive the process), NetworkPolicy is no longer enforced; enforcer-start restores enforcement.
KUBE_ROUTER_CHAINS='KUBE-ROUTER-|KUBE-NWPLCY-|KUBE-POD-FW-|KUBE-SRC-|KUBE-DST-'
cmd_enforcer_stop() {
  stop_component kube-router 10
  clean_iptables "${KUBE_ROUTER_CHAINS}" '^(inet6:)?KUBE-(SRC|DST)-|^kube-router'
  say "NetworkPolicy enforcement OFF (kube-router stopped, its chains and ipsets removed)"
}
cmd_enforcer_start() {
  tools
  pid_of kube-router >/dev/null || start_kube_router
  wait_for "kube-router healthy" 60 kube-router curl -fsS http://127.0.0.1:20244/healthz
  say "NetworkPolicy enforcement ON"
}

# For fault tests: the kubelet restarted as a node reboot would (running Pods keep running).
cmd_kubelet_restart() {
  tools
  stop_component kubelet 10
  start_kubelet "$(node_ip)"
  wait_for "kubelet healthz" 60 kubelet curl -fsS http://127.0.0.1:10248/healthz
  wait_for "node Ready" 60 kubelet node_ready
  say "kubelet restarted"
}

# After `scripts/build-images.sh`: the node's copies of the project's images replaced.
cmd_load_images() {
  tools
  pid_of containerd >/dev/null || die "the node is not up"
  load_images
}

case "${1:-}" in
  up) cmd_up ;;
  load-images) cmd_load_images ;;
  kubelet-restart) cmd_kubelet_restart ;;
  enforcer-stop) cmd_enforcer_stop ;;
  enforcer-start) cmd_enforcer_start ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "usage: scripts/k8s-node.sh up|down|status|env" ;;
esac
