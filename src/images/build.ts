/**
 * Builds the two container images Airlock runs: the egress gateway and the sandbox (see
 * docs/images.md). Both come from one Dockerfile (`--target gateway|sandbox`) whose base is
 * `ARG BASE_IMAGE`:
 *
 * - online: the Dockerfile's default base (`node:24-bookworm-slim`), pulled from a registry;
 * - offline: `airlock-base:local`, made by `scripts/build-base.sh` from this machine's own
 *   installed Debian packages and Node binary (`docker import`), so no registry is needed.
 *
 * The build context never needs the network either: `dist/` must already be built on the host
 * (`npm run build`), and a staged context directory (see contextDir(); outside the work tree, so
 * that linters and test runners never see its copies) receives dist/,
 * policies/, package.json, package-lock.json and production-only node_modules (`npm ci
 * --omit=dev`, packed as node_modules.tar, redone only when package-lock.json changes).
 *
 * The docker CLI and npm are run through `child_process.spawn` with argument arrays (no shell).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RuntimeError } from '../errors.js';

export const DEFAULT_GATEWAY_TAG = 'airlock-gateway:dev';
export const DEFAULT_SANDBOX_TAG = 'airlock-sandbox:dev';
/** The base image `scripts/build-base.sh` makes from this machine's files. */
export const OFFLINE_BASE_IMAGE = 'airlock-base:local';
/**
 * Where the build context for `repoRoot` is staged: a directory of the system's temporary
 * directory, one per checkout, kept between builds so that node_modules is reinstalled only when
 * package-lock.json changes. `AIRLOCK_IMAGE_CONTEXT_DIR` overrides it.
 */
export function contextDir(repoRoot: string): string {
  const fromEnv = process.env['AIRLOCK_IMAGE_CONTEXT_DIR'];
  if (fromEnv) return path.resolve(fromEnv);
  const key = createHash('sha256').update(path.resolve(repoRoot)).digest('hex').slice(0, 12);
  return path.join(tmpdir(), `airlock-image-context-${key}`);
}
/** Production node_modules as one tar file in the context; the Dockerfile ADDs it. */
const NODE_MODULES_TAR = 'node_modules.tar';

export interface BuildImagesOptions {
  /** Build on `airlock-base:local` (made from this machine's files) instead of pulling a base. */
  offline: boolean;
  /** Repository root: holds Dockerfile, scripts/, dist/ (already built), policies/, package*.json. */
  repoRoot: string;
  /** @default "airlock-gateway:dev" */
  gatewayTag?: string;
  /** @default "airlock-sandbox:dev" */
  sandboxTag?: string;
  /** Receives progress lines and the output of every command run. */
  log?: (line: string) => void;
}

/** How many trailing output lines of a failed command go into the error message. */
const TAIL_LINES = 25;

/**
 * Builds the gateway and sandbox images and tags them.
 * @throws RuntimeError when a prerequisite is missing or a step fails; the message names the step
 *   and carries the end of its output.
 */
export async function buildImages(opts: BuildImagesOptions): Promise<void> {
  const log = opts.log ?? (() => undefined);
  const repoRoot = path.resolve(opts.repoRoot);
  const gatewayTag = opts.gatewayTag ?? DEFAULT_GATEWAY_TAG;
  const sandboxTag = opts.sandboxTag ?? DEFAULT_SANDBOX_TAG;
  const started = Date.now();

  await requireFile(repoRoot, 'Dockerfile', 'the repository root must hold the Dockerfile');
  await requireFile(repoRoot, 'package.json', 'repoRoot must be the Airlock repository root');
  await requireFile(repoRoot, 'package-lock.json', 'repoRoot must be the Airlock repository root');
  await requireFile(repoRoot, 'policies', 'the default policies/ directory is missing');
  await requireFile(repoRoot, path.join('dist', 'cli', 'main.js'), 'build dist/ first: npm run build');

  const server = await run('docker', ['version', '--format', '{{.Server.Version}}'], {
    step: 'docker engine check',
    log: () => undefined,
  });
  log(`[images] docker engine ${server.trim()}`);

  const buildArgs: string[] = [];
  const previousBase = opts.offline ? await imageId(OFFLINE_BASE_IMAGE) : null;
  if (opts.offline) {
    log(`[images] offline: building ${OFFLINE_BASE_IMAGE} from this machine's files`);
    await requireFile(repoRoot, path.join('scripts', 'build-base.sh'), 'scripts/build-base.sh is missing');
    await run('bash', [path.join(repoRoot, 'scripts', 'build-base.sh'), OFFLINE_BASE_IMAGE], {
      step: 'offline base image (scripts/build-base.sh)',
      cwd: repoRoot,
      log,
    });
    buildArgs.push('--build-arg', `BASE_IMAGE=${OFFLINE_BASE_IMAGE}`);
  } else {
    log('[images] online: using the Dockerfile default BASE_IMAGE (needs a registry)');
  }

  const context = await stageContext(repoRoot, log);

  for (const [target, tag] of [
    ['gateway', gatewayTag],
    ['sandbox', sandboxTag],
  ] as const) {
    log(`[images] docker build --target ${target} -t ${tag}`);
    const previous = await imageId(tag);
    await run(
      'docker',
      [
        'build',
        '--target',
        target,
        '--tag',
        tag,
        '--file',
        path.join(repoRoot, 'Dockerfile'),
        '--label',
        `airlock.image=${target}`,
        ...buildArgs,
        context,
      ],
      // The classic builder works with every docker CLI that talks to an engine, including
      // Debian's docker.io 20.10 and newer CLIs without the buildx plugin.
      { step: `docker build (${target})`, cwd: repoRoot, env: { DOCKER_BUILDKIT: '0' }, log },
    );
    await removeSuperseded(previous, tag, log);
  }
  // A rebuilt base replaces the old one once no image is built on it any more.
  await removeSuperseded(previousBase, OFFLINE_BASE_IMAGE, log);
  log(`[images] built ${gatewayTag} and ${sandboxTag} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * Fills the context directory (contextDir()) with what the Dockerfile copies. node_modules is reinstalled
 * (production only) only when package-lock.json changed since the last staging.
 * @returns the absolute path of the context directory.
 */
export async function stageContext(
  repoRoot: string,
  log: (line: string) => void = () => undefined,
): Promise<string> {
  const ctx = contextDir(repoRoot);
  await mkdir(ctx, { recursive: true });
  log(`[images] staging build context in ${ctx}`);

  await rm(path.join(ctx, 'dist'), { recursive: true, force: true });
  await rm(path.join(ctx, 'policies'), { recursive: true, force: true });
  // Type declarations are not needed at run time.
  await cp(path.join(repoRoot, 'dist'), path.join(ctx, 'dist'), {
    recursive: true,
    filter: (src) => !/\.d\.ts(\.map)?$/.test(src),
  });
  await cp(path.join(repoRoot, 'policies'), path.join(ctx, 'policies'), { recursive: true });
  for (const f of ['package.json', 'package-lock.json', '.dockerignore']) {
    if (await exists(path.join(repoRoot, f))) await cp(path.join(repoRoot, f), path.join(ctx, f));
  }

  // Production node_modules, packed into one tar file that the Dockerfile ADDs (and the engine
  // unpacks): the classic builder hashes one file instead of thousands, which makes a cached
  // rebuild take well under a second instead of several. Redone only when package-lock.json
  // changes; packed with fixed owners, order and times so that the same lock gives the same layer.
  const lock = await readFile(path.join(repoRoot, 'package-lock.json'));
  const lockHash = createHash('sha256').update(lock).digest('hex');
  const tarball = path.join(ctx, NODE_MODULES_TAR);
  const stampFile = path.join(ctx, `${NODE_MODULES_TAR}.lock-sha256`);
  const stamp = (await exists(stampFile)) ? (await readFile(stampFile, 'utf8')).trim() : '';
  if (stamp === lockHash && (await exists(tarball))) {
    log('[images] production node_modules current');
  } else {
    log('[images] npm ci --omit=dev (production node_modules)');
    await rm(stampFile, { force: true });
    await rm(tarball, { force: true });
    await rm(path.join(ctx, 'node_modules'), { recursive: true, force: true });
    await run(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'],
      {
        step: 'npm ci --omit=dev in the staged context',
        cwd: ctx,
        log,
      },
    );
    await run(
      'tar',
      [
        '--sort=name',
        '--mtime=@0',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '-cf',
        tarball,
        'node_modules',
      ],
      { step: 'packing node_modules', cwd: ctx, log },
    );
    await rm(path.join(ctx, 'node_modules'), { recursive: true, force: true });
    await writeFile(stampFile, `${lockHash}\n`);
  }
  return ctx;
}

/** The image ID `tag` names now, or null. */
async function imageId(tag: string): Promise<string | null> {
  try {
    const id = await run('docker', ['image', 'inspect', '--format', '{{.Id}}', tag], {
      step: 'docker image inspect',
      log: () => undefined,
    });
    return id.trim() || null;
  } catch {
    return null;
  }
}

/**
 * Removes the image `tag` named before a rebuild when the rebuild moved the tag and nothing else
 * names it, so that repeated builds do not pile up untagged images. Best effort: an image still
 * used by a container (or by another tag) stays.
 */
async function removeSuperseded(
  previous: string | null,
  tag: string,
  log: (line: string) => void,
): Promise<void> {
  if (!previous || previous === (await imageId(tag))) return;
  try {
    const tags = await run('docker', ['image', 'inspect', '--format', '{{len .RepoTags}}', previous], {
      step: 'docker image inspect',
      log: () => undefined,
    });
    if (tags.trim() !== '0') return;
    await run('docker', ['image', 'rm', previous], { step: 'docker image rm', log: () => undefined });
    log(`[images] removed the previous ${tag} (${previous.slice(0, 19)})`);
  } catch {
    // still in use: keep it
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function requireFile(root: string, rel: string, hint: string): Promise<void> {
  if (!(await exists(path.join(root, rel)))) {
    throw new RuntimeError(`cannot build images: ${path.join(root, rel)} not found (${hint})`);
  }
}

interface RunOptions {
  /** Names the step in error messages. */
  step: string;
  cwd?: string;
  env?: Record<string, string>;
  log: (line: string) => void;
}

/**
 * Runs a command without a shell, passing each output line to `log`.
 * @returns its standard output.
 * @throws RuntimeError when it cannot start or exits non-zero.
 */
function run(cmd: string, args: readonly string[], opts: RunOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const tail: string[] = [];
    const partial = { stdout: '', stderr: '' };
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (stream === 'stdout') stdout += text;
      const lines = (partial[stream] + text).split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const line of lines) emit(line);
    };
    const emit = (line: string) => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      opts.log(line);
    };
    child.stdout.on('data', onData('stdout'));
    child.stderr.on('data', onData('stderr'));
    child.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? `${cmd} not found on PATH (run scripts/setup.sh)` : err.message;
      reject(new RuntimeError(`${opts.step} failed: ${why}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      for (const rest of [partial.stdout, partial.stderr]) if (rest) emit(rest);
      if (code === 0) {
        resolve(stdout);
        return;
      }
      const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
      const shown = tail.filter((l) => l.trim() !== '').join('\n');
      reject(
        new RuntimeError(
          `${opts.step} failed: \`${cmd} ${args.join(' ')}\` ${how}${shown ? `:\n${shown}` : ''}`,
        ),
      );
    });
  });
}
