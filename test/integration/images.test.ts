/**
 * The images built by `scripts/build-images.sh --offline` (`airlock images build --offline`), on the
 * real Docker engine. Nothing is skipped: without an engine or without the images every test fails
 * and says what to run.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DEFAULT_GATEWAY_TAG, DEFAULT_SANDBOX_TAG } from '../../src/images/build.js';

const run = promisify(execFile);

async function docker(...args: string[]): Promise<string> {
  const { stdout } = await run('docker', args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

interface ImageConfig {
  User: string;
  Cmd: string[] | null;
  WorkingDir: string;
  ExposedPorts: Record<string, object> | null;
  Labels: Record<string, string> | null;
}

async function imageConfig(tag: string): Promise<ImageConfig> {
  return JSON.parse(await docker('image', 'inspect', '--format', '{{json .Config}}', tag)) as ImageConfig;
}

/**
 * Checked once, awaited by every test, so that a missing engine or image makes each test fail
 * with the reason (a failing hook would only mark the tests as skipped).
 */
let prerequisites: Promise<void> | undefined;
function requireEngineAndImages(): Promise<void> {
  prerequisites ??= checkEngineAndImages();
  return prerequisites;
}

async function checkEngineAndImages(): Promise<void> {
  try {
    await docker('version', '--format', '{{.Server.Version}}');
  } catch (err) {
    throw new Error(
      `the images tests need a running Docker engine (run scripts/setup.sh, which starts dockerd): ${String(err)}`,
      { cause: err },
    );
  }
  for (const tag of [DEFAULT_GATEWAY_TAG, DEFAULT_SANDBOX_TAG]) {
    try {
      await docker('image', 'inspect', '--format', '{{.Id}}', tag);
    } catch (err) {
      throw new Error(`image ${tag} not found: build it with scripts/build-images.sh --offline`, {
        cause: err,
      });
    }
  }
}

describe('sandbox image', () => {
  it('runs as agent (uid/gid 10001) in /home/agent with a long-lived default command', async () => {
    await requireEngineAndImages();
    const cfg = await imageConfig(DEFAULT_SANDBOX_TAG);
    expect(cfg.User).toBe('10001:10001');
    expect(cfg.WorkingDir).toBe('/home/agent');
    expect(cfg.Cmd).toEqual(['sleep', 'infinity']);
    expect(cfg.Labels?.['airlock.image']).toBe('sandbox');
  });

  it('has curl, git, node, python3 with requests and busybox tools, and no set-uid programs, under the sandbox settings', async () => {
    await requireEngineAndImages();
    const out = await docker(
      'run',
      '--rm',
      '--network',
      'none',
      '--cap-drop',
      'ALL',
      '--security-opt',
      'no-new-privileges',
      DEFAULT_SANDBOX_TAG,
      'sh',
      '-c',
      [
        'echo "uid=$(id -u) gid=$(id -g) user=$(id -un) home=$HOME pwd=$(pwd)"',
        'curl --version | head -n1',
        'git --version',
        'node -e "console.log(\'node \' + process.versions.node)"',
        'python3 -c "import requests; print(\'python requests \' + requests.__version__)"',
        'for t in wget nc ip vi; do command -v "$t" >/dev/null && echo "has $t"; done',
        'echo "setuid:$(find / -xdev -type f -perm /6000 2>/dev/null | wc -l)"',
        'touch "$HOME/written" && echo "home writable"',
      ].join('; '),
    );
    expect(out).toContain('uid=10001 gid=10001 user=agent home=/home/agent pwd=/home/agent');
    expect(out).toMatch(/^curl \d+\.\d+/m);
    expect(out).toMatch(/^git version \d+\.\d+/m);
    const node = /^node (\d+)\.(\d+)/m.exec(out);
    expect(node, out).not.toBeNull();
    expect(Number(node?.[1]) * 1000 + Number(node?.[2])).toBeGreaterThanOrEqual(22_019);
    expect(out).toMatch(/^python requests \d+\./m);
    for (const t of ['wget', 'nc', 'ip', 'vi']) expect(out).toContain(`has ${t}`);
    expect(out).toContain('setuid:0');
    expect(out).toContain('home writable');
  });
});

describe('gateway image', () => {
  it('runs the gateway as a non-root user and exposes 3128', async () => {
    await requireEngineAndImages();
    const cfg = await imageConfig(DEFAULT_GATEWAY_TAG);
    expect(cfg.User).toBe('10002:10002');
    expect(cfg.Cmd).toEqual(['node', '/app/dist/cli/main.js', 'gateway']);
    expect(Object.keys(cfg.ExposedPorts ?? {})).toEqual(['3128/tcp']);
    expect(cfg.Labels?.['airlock.image']).toBe('gateway');
  });

  it('holds dist/, default policies and production dependencies only, owned by root', async () => {
    await requireEngineAndImages();
    const out = await docker(
      'run',
      '--rm',
      '--network',
      'none',
      '--cap-drop',
      'ALL',
      DEFAULT_GATEWAY_TAG,
      'sh',
      '-c',
      [
        'id -u',
        'node /app/dist/cli/main.js --help | head -n1',
        'ls /app/policies',
        'test -d /app/node_modules/express && echo "has express"',
        'test -e /app/node_modules/vitest || echo "no vitest"',
        'test -e /app/src || echo "no src"',
        'stat -c "owner %u" /app/dist/cli/main.js',
        'touch /app/dist/x 2>/dev/null || echo "app read-only"',
      ].join('; '),
    );
    const lines = out.split('\n');
    expect(lines[0]).toBe('10002');
    expect(out).toContain('Usage: airlock');
    expect(out).toMatch(/model\.conf/);
    expect(out).toMatch(/policy\.csv/);
    for (const s of ['has express', 'no vitest', 'no src', 'owner 0', 'app read-only'])
      expect(out).toContain(s);
  });
});
