#!/usr/bin/env bash
# Build the gateway and sandbox images: airlock-gateway:dev and airlock-sandbox:dev.
#
# Usage: scripts/build-images.sh [--offline]
#   --offline   build on airlock-base:local, made from this machine's files (no registry needed)
#
# Same as `npm run build && node dist/cli/main.js images build [--offline]`, without depending on
# the CLI: it calls buildImages() from dist/images/build.js directly. See docs/images.md.
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/sbin:${PATH}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

offline=false
for arg in "$@"; do
  case "${arg}" in
    --offline) offline=true ;;
    -h | --help)
      sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-images: unknown argument ${arg}" >&2
      exit 2
      ;;
  esac
done

npm run --silent build
node --input-type=module -e '
import { buildImages } from "./dist/images/build.js";
try {
  await buildImages({ offline: process.argv[1] === "true", repoRoot: process.cwd(), log: (l) => console.log(l) });
} catch (err) {
  console.error(`build-images: ${err.message}`);
  process.exit(1);
}' "${offline}"
