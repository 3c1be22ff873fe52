#!/usr/bin/env bash
# Build the offline base image `airlock-base:local` from this machine's own installed files.
#
# No registry is reachable here, so `docker pull` is impossible. Instead this script takes the
# dependency closure of a small package set over the Debian packages INSTALLED on this machine,
# copies every file those packages own (`dpkg -L`, files and symlinks as they are) into a temporary
# root filesystem, adds the host's Node binary, users root and agent (uid/gid 10001), CA
# certificates and a linker cache, and `docker import`s the tree.
#
# The image carries a fingerprint label (package versions + Node + this script); when an image with
# the same fingerprint exists the build is skipped. AIRLOCK_BASE_REBUILD=1 forces a rebuild.
#
# Usage: scripts/build-base.sh [TAG]      (default TAG: airlock-base:local)
set -euo pipefail

export PATH="/usr/local/bin:/usr/local/sbin:${PATH}"
TAG="${1:-airlock-base:local}"
SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

# What the image must run: a shell and the usual tools, busybox for the rest (wget, nc, ip, ...),
# curl and git, CA certificates, and the libraries Node links against.
SEED_PACKAGES=(
  base-files libc6 libc-bin libgcc-s1 libstdc++6 dash bash coreutils sed grep mawk findutils gzip
  tar debianutils netbase busybox curl git ca-certificates
  python3-minimal python3-requests
)
# Left out on purpose although `git` depends on them: git's perl-written extras (send-email, svn,
# ...) are not needed in a sandbox, and the perl stack would add ~50 MiB. `perl-base` (the
# interpreter with core modules) stays, because debconf needs it.
EXCLUDE_PACKAGES=(perl libperl5.36 perl-modules-5.36 liberror-perl git-man)
# Documentation and translations are not needed to run anything.
EXCLUDE_PATH_RE='^/usr/share/(doc|doc-base|man|info|locale|lintian|linda|bug|bash-completion|bash-completion/.*|zsh|fish)(/|$)'

AGENT_UID=10001

say() { printf '[build-base] %s\n' "$*"; }
die() { printf '[build-base] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (the copied tree must keep its owners)"
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script needs a Debian machine"
docker info >/dev/null 2>&1 || die "the docker engine does not answer (run scripts/setup.sh)"

started=$(date +%s)

# --- Node ----------------------------------------------------------------------------------------
NODE_BIN="$(command -v node || true)"
[[ -n "${NODE_BIN}" ]] || die "node not found (run scripts/setup.sh)"
NODE_REAL="$(readlink -f "${NODE_BIN}")"
NODE_VERSION="$("${NODE_REAL}" -p 'process.versions.node')"
[[ "$(printf '%s\n22.19\n' "${NODE_VERSION}" | sort -V | head -n1)" == "22.19" ]] ||
  die "node ${NODE_VERSION} (${NODE_REAL}) is older than 22.19 (run scripts/setup.sh)"
[[ "$(head -c4 "${NODE_REAL}" | od -An -c | tr -d ' ')" == '177ELF' ]] ||
  die "${NODE_REAL} is not an ELF binary (a wrapper script cannot be copied into the image)"

# --- Dependency closure over installed packages ------------------------------------------------
declare -A INSTALLED DEPENDS PROVIDER SEEN EXCLUDED
for p in "${EXCLUDE_PACKAGES[@]}"; do EXCLUDED[$p]=1; done
# One dpkg-query call; fields separated by US (0x1f) because fields may be empty.
while IFS=$'\x1f' read -r status pkg provides predepends depends; do
  [[ "${status}" == ii* ]] || continue
  INSTALLED[$pkg]=1
  DEPENDS[$pkg]="${predepends}${predepends:+, }${depends}"
  IFS=',' read -ra provided <<<"${provides}"
  for v in "${provided[@]}"; do
    v="${v%%(*}"
    v="${v// /}"
    [[ -n "${v}" && -z "${PROVIDER[$v]:-}" ]] && PROVIDER[$v]="${pkg}"
  done
done < <(dpkg-query -W -f=$'${db:Status-Abbrev}\x1f${Package}\x1f${Provides}\x1f${Pre-Depends}\x1f${Depends}\n')

queue=()
for p in "${SEED_PACKAGES[@]}"; do
  [[ -n "${INSTALLED[$p]:-}" ]] || die "package ${p} is not installed on this machine (run scripts/setup.sh)"
  queue+=("${p}")
done
while ((${#queue[@]})); do
  pkg="${queue[0]}"
  queue=("${queue[@]:1}")
  [[ -n "${SEEN[$pkg]:-}" || -n "${EXCLUDED[$pkg]:-}" ]] && continue
  SEEN[$pkg]=1
  IFS=',' read -ra groups <<<"${DEPENDS[$pkg]:-}"
  for group in "${groups[@]}"; do
    [[ -z "${group// /}" ]] && continue
    IFS='|' read -ra alternatives <<<"${group}"
    chosen=""
    for alt in "${alternatives[@]}"; do
      alt="${alt%%(*}"
      alt="${alt// /}"
      alt="${alt%%:*}" # perl:any -> perl
      if [[ -n "${INSTALLED[$alt]:-}" ]]; then chosen="${alt}"; break; fi
      if [[ -n "${PROVIDER[$alt]:-}" ]]; then chosen="${PROVIDER[$alt]}"; break; fi
    done
    [[ -n "${chosen}" ]] || die "${pkg} depends on '${group# }' and nothing installed satisfies it"
    queue+=("${chosen}")
  done
done
mapfile -t PACKAGES < <(printf '%s\n' "${!SEEN[@]}" | sort)

fingerprint="$(
  {
    dpkg-query -W -f='${Package}=${Version}\n' "${PACKAGES[@]}"
    echo "node=${NODE_VERSION} $(stat -c '%s %Y' "${NODE_REAL}")"
    sha256sum "${SCRIPT_PATH}" | cut -d' ' -f1
  } | sha256sum | cut -c1-16
)"

if [[ "${AIRLOCK_BASE_REBUILD:-0}" != "1" ]] &&
  [[ "$(docker image inspect -f '{{index .Config.Labels "airlock.base.fingerprint"}}' "${TAG}" 2>/dev/null || true)" == "${fingerprint}" ]]; then
  say "${TAG} is current (fingerprint ${fingerprint}); set AIRLOCK_BASE_REBUILD=1 to rebuild"
  exit 0
fi
say "${#PACKAGES[@]} packages: ${PACKAGES[*]}"

# --- Root filesystem -----------------------------------------------------------------------------
WORK="$(mktemp -d /var/tmp/airlock-base.XXXXXX)"
cleanup() { rm -rf "${WORK}"; }
trap cleanup EXIT
ROOTFS="${WORK}/rootfs"
mkdir -p "${ROOTFS}"

# Debian 12 merges /bin, /sbin and /lib into /usr: recreate the same top-level symlinks first so
# that files listed under /bin land in /usr/bin (tar keeps them with --keep-directory-symlink).
for d in bin sbin lib lib32 lib64 libx32; do
  if [[ -L "/${d}" ]]; then
    mkdir -p "${ROOTFS}/$(readlink -f "/${d}")"
    ln -s "$(readlink "/${d}")" "${ROOTFS}/${d}"
  fi
done

LIST="${WORK}/files"
dpkg -L "${PACKAGES[@]}" 2>/dev/null |
  grep -v -E "${EXCLUDE_PATH_RE}" |
  grep -v -x -E '/\.|/(bin|sbin|lib|lib32|lib64|libx32)' |
  sort -u |
  while IFS= read -r f; do
    # Listed paths may be gone (removed docs, conffiles deleted by an admin): copy what exists.
    if [[ -e "${f}" || -L "${f}" ]]; then printf '%s\n' "${f#/}"; fi
  done >"${LIST}"

# Alternatives (/usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk) are made by maintainer
# scripts, not listed by dpkg -L: add the links whose chosen target is in the image.
while IFS= read -r alt_file; do
  name="$(basename "${alt_file}")"
  # File layout: mode, master link, then "slave-name\nslave-link" pairs until an empty line.
  mapfile -t lines <"${alt_file}"
  pairs=("${name}" "${lines[1]:-}")
  for ((i = 2; i + 1 < ${#lines[@]}; i += 2)); do
    [[ -z "${lines[i]}" ]] && break
    pairs+=("${lines[i]}" "${lines[i + 1]}")
  done
  for ((i = 0; i + 1 < ${#pairs[@]}; i += 2)); do
    alt_name="${pairs[i]}"
    link="${pairs[i + 1]}"
    [[ -L "/etc/alternatives/${alt_name}" && -L "${link}" ]] || continue
    target="$(readlink "/etc/alternatives/${alt_name}")"
    if grep -qxF "${target#/}" "${LIST}"; then
      printf '%s\n%s\n' "etc/alternatives/${alt_name}" "${link#/}" >>"${LIST}"
    fi
  done
done < <(find /var/lib/dpkg/alternatives -maxdepth 1 -type f 2>/dev/null)

# CA certificates as update-ca-certificates left them on this machine (links and bundle).
[[ -d /etc/ssl/certs ]] && printf '%s\n' etc/ssl/certs >>"${LIST}" && find /etc/ssl/certs -mindepth 1 | sed 's|^/||' >>"${LIST}"
# Linker configuration (ld.so.conf.d is owned by libc6 but ld.so.conf by nobody in particular).
for f in etc/ld.so.conf etc/ld.so.conf.d; do [[ -e "/${f}" ]] && printf '%s\n' "${f}" >>"${LIST}"; done
find /etc/ld.so.conf.d -mindepth 1 2>/dev/null | sed 's|^/||' >>"${LIST}"
sort -u -o "${LIST}" "${LIST}"

say "copying $(wc -l <"${LIST}") paths from this machine"
tar -C / --no-recursion --numeric-owner --verbatim-files-from -T "${LIST}" -cf - |
  tar -C "${ROOTFS}" --keep-directory-symlink --numeric-owner -xpf -

# Node: the real binary, not the npm package's symlink.
install -D -m 0755 "${NODE_REAL}" "${ROOTFS}/usr/local/bin/node"

# busybox applets that nothing else provides (wget, nc, ip, ping, vi, ...), as symlinks.
while IFS= read -r applet; do
  if [[ ! -e "${ROOTFS}/${applet}" && ! -L "${ROOTFS}/${applet}" ]]; then
    mkdir -p "$(dirname "${ROOTFS}/${applet}")"
    ln -s /bin/busybox "${ROOTFS}/${applet}"
  fi
done < <(/bin/busybox --list-full | grep -v -x linuxrc)

# Users, groups and name service.
cat >"${ROOTFS}/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
agent:x:${AGENT_UID}:${AGENT_UID}:Airlock sandbox agent:/home/agent:/bin/bash
EOF
cat >"${ROOTFS}/etc/group" <<EOF
root:x:0:
nogroup:x:65534:
agent:x:${AGENT_UID}:
EOF
chmod 0644 "${ROOTFS}/etc/passwd" "${ROOTFS}/etc/group"
cat >"${ROOTFS}/etc/nsswitch.conf" <<'EOF'
passwd:   files
group:    files
shadow:   files
hosts:    files dns
networks: files
protocols: files
services: files
EOF
mkdir -p "${ROOTFS}/root" "${ROOTFS}/home/agent" "${ROOTFS}/tmp" "${ROOTFS}/var/tmp" \
  "${ROOTFS}/proc" "${ROOTFS}/sys" "${ROOTFS}/dev" "${ROOTFS}/run" "${ROOTFS}/etc"
chmod 0700 "${ROOTFS}/root"
chmod 1777 "${ROOTFS}/tmp" "${ROOTFS}/var/tmp"
chown "${AGENT_UID}:${AGENT_UID}" "${ROOTFS}/home/agent"
chmod 0755 "${ROOTFS}/home/agent"
: >"${ROOTFS}/etc/hosts"
: >"${ROOTFS}/etc/resolv.conf"

# No set-uid/set-gid programs: nothing in a sandbox may gain privileges.
find "${ROOTFS}" -xdev -type f -perm /6000 -exec chmod ug-s {} +

# Linker cache for the copied libraries.
ldconfig -r "${ROOTFS}"

previous_id="$(docker image inspect -f '{{.Id}}' "${TAG}" 2>/dev/null || true)"
say "importing $(du -sm "${ROOTFS}" | cut -f1) MiB as ${TAG}"
tar -C "${ROOTFS}" --numeric-owner -cf - . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL airlock.base.fingerprint=${fingerprint}" \
    --change "LABEL org.opencontainers.image.description=\"Airlock offline base: host Debian packages and Node ${NODE_VERSION}\"" \
    --change 'CMD ["bash"]' \
    -m "airlock offline base ${fingerprint}" \
    - "${TAG}" >/dev/null

# Smoke test: everything the Dockerfile and the sandboxes rely on.
check() {
  local out
  out="$(docker run --rm --network none "${TAG}" "$@" 2>&1)" || die "'$*' failed in ${TAG}: ${out}"
  say "  $* -> $(printf '%s' "${out}" | head -n1)"
}
check node -e 'console.log(process.version)'
check curl --version
check git --version
check sh -c 'id agent'
check busybox wget --help
# The image this one replaces: removed unless images are still built on it (then
# src/images/build.ts removes it after rebuilding them).
if [[ -n "${previous_id}" && "$(docker image inspect -f '{{len .RepoTags}}' "${previous_id}" 2>/dev/null)" == "0" ]]; then
  docker image rm "${previous_id}" >/dev/null 2>&1 && say "removed the previous ${TAG} (${previous_id:7:12})" || true
fi
say "built ${TAG} ($(docker image inspect -f '{{.Size}}' "${TAG}" | awk '{printf "%d MiB", $1/1048576}')) in $(($(date +%s) - started)) s"
