import { readFileSync } from 'node:fs';

/** Airlock's version: `version` of package.json (one directory above src/ and dist/). */
export function airlockVersion(): string {
  return (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
}
