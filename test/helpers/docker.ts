/** Docker helpers for e2e tests: a clean slate of Airlock-managed objects, and facts about networks. */
import Docker from 'dockerode';
import { LABEL } from '../../src/runtime/docker/labels.js';

export const docker = new Docker({ socketPath: '/var/run/docker.sock' });

/** Fails with a clear message when Docker or the images are missing (never skips silently). */
export async function requireDockerAndImages(images: string[]): Promise<void> {
  try {
    await docker.ping();
  } catch {
    throw new Error('e2e tests need a running Docker engine: run scripts/setup.sh (it starts dockerd)');
  }
  for (const image of images) {
    try {
      await docker.getImage(image).inspect();
    } catch {
      throw new Error(`e2e tests need image ${image}: run "node dist/cli/main.js images build --offline"`);
    }
  }
}

/** Removes every container and network Airlock manages on this engine (tests own the engine). */
export async function removeAirlockObjects(): Promise<void> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.managed}=true`] },
  });
  await Promise.all(
    containers.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined),
    ),
  );
  const networks = await docker.listNetworks({ filters: { label: [`${LABEL.managed}=true`] } });
  for (const n of networks)
    await docker
      .getNetwork(n.Id)
      .remove()
      .catch(() => undefined);
}

/** The host-side (gateway) address of a Docker network. */
export async function networkGateway(name: string): Promise<string> {
  const info = await docker.getNetwork(name).inspect();
  const gw = info.IPAM?.Config?.[0]?.Gateway;
  if (!gw) throw new Error(`network ${name} has no gateway address`);
  return gw;
}

export async function exists(kind: 'container' | 'network', name: string): Promise<boolean> {
  try {
    if (kind === 'container') await docker.getContainer(name).inspect();
    else await docker.getNetwork(name).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}
