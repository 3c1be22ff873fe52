import { isIP } from 'node:net';
import { z } from 'zod';
import { policyConfigSchema } from '../policy/config.js';

/**
 * The one config schema (YAML on disk, see docs/config.md). Every object is strict: an unknown key
 * is an error naming its path. Defaults live here and only here.
 */

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:8080');

const cidr = z.string().refine((v) => {
  const [addr, bits, extra] = v.split('/');
  if (extra !== undefined || addr === undefined || bits === undefined || !/^\d{1,3}$/.test(bits))
    return false;
  const family = isIP(addr);
  return family !== 0 && Number(bits) <= (family === 4 ? 32 : 128);
}, 'expected a CIDR such as 10.0.0.0/8 or fd00::/8');

const hostName = z
  .string()
  .min(1)
  .regex(/^[A-Za-z0-9.-]+$/, 'expected a DNS name (letters, digits, dots, hyphens)');

const aliasTarget = z.union([
  z.literal('host-gateway'),
  z.string().refine((v) => isIP(v) !== 0, 'expected an IP address or "host-gateway"'),
]);

export const configSchema = z
  .object({
    api: z
      .object({
        /** Where the sandbox API listens. @default "127.0.0.1:8080" */
        listen: hostPort.default('127.0.0.1:8080'),
        /** Bearer tokens accepted by the API, each with a caller name used in audit and logs. */
        tokens: z
          .array(
            z.strictObject({ name: hostName, token: z.string().min(16, 'tokens need >= 16 characters') }),
          )
          .default([]),
      })
      .strict()
      .prefault({}),
    gateway: z
      .object({
        /** Forward-proxy port inside the gateway. @default 3128 */
        port: z.number().int().min(1).max(65535).default(3128),
        /** Upstream names resolved by the gateway itself: name -> IP, or "host-gateway" (the Docker host). */
        hostAliases: z.record(hostName, aliasTarget).default({}),
        /** Private/loopback ranges the gateway may dial anyway (refused by default). */
        allowPrivateCidrs: z.array(cidr).default([]),
        /** Upstream connect timeout in ms. @default 5000 */
        connectTimeoutMs: z.number().int().positive().default(5_000),
        /** Time to receive upstream response headers, in ms. @default 30000 */
        headersTimeoutMs: z.number().int().positive().default(30_000),
        /** Idle time allowed between body chunks, in ms. @default 300000 */
        bodyTimeoutMs: z.number().int().positive().default(300_000),
        /** Gateway container image (Docker runtime). @default "airlock-gateway:dev" */
        image: z.string().min(1).default('airlock-gateway:dev'),
      })
      .strict()
      .prefault({}),
    /** Where the policy comes from: `dir` (default "policies") or `git`, not both (src/policy/config.ts). */
    policy: policyConfigSchema,
    runtime: z
      .object({
        kind: z.enum(['docker']).default('docker'),
        /** Image each session's sandbox runs. @default "airlock-sandbox:dev" */
        sandboxImage: z.string().min(1).default('airlock-sandbox:dev'),
        resources: z
          .object({
            /** CPU limit per sandbox, in cores. @default 1 */
            cpus: z.number().positive().max(64).default(1),
            /** Memory limit per sandbox, in MiB. @default 512 */
            memoryMiB: z.number().int().min(16).default(512),
            /** Process limit per sandbox. @default 256 */
            pids: z.number().int().min(8).default(256),
          })
          .strict()
          .prefault({}),
        docker: z
          .object({
            /** Docker engine socket. @default "/var/run/docker.sock" */
            socketPath: z.string().min(1).default('/var/run/docker.sock'),
            /** Pool that per-session internal networks (/29 each) are carved from. @default "10.213.0.0/16" */
            subnetPool: cidr.default('10.213.0.0/16'),
            /**
             * Subnet of the gateway's egress network `airlock-egress`; its first address is what
             * `host-gateway` aliases resolve to. Unset: Docker picks one when creating the network.
             */
            egressSubnet: cidr.optional(),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    sessions: z
      .object({
        /** TTL when a create request names none, in seconds. @default 3600 */
        defaultTtlSeconds: z.number().int().positive().default(3_600),
        /** Largest TTL a create request may ask for, in seconds. @default 86400 */
        maxTtlSeconds: z.number().int().positive().default(86_400),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        /** JSON-lines audit file. Relative paths are relative to stateDir. @default "audit.jsonl" */
        file: z.string().min(1).default('audit.jsonl'),
      })
      .strict()
      .prefault({}),
    /** Where Airlock keeps its state (API token, audit file). @default ".airlock" */
    stateDir: z.string().min(1).default('.airlock'),
  })
  .strict();

/** The config file as written (every key optional). */
export type ConfigInput = z.input<typeof configSchema>;
/** The config with every default applied and paths resolved. */
export type Config = z.output<typeof configSchema>;
