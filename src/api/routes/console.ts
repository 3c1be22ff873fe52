import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Express } from 'express';
import type { ApiContext } from '../context.js';
import { ApiErrorCodes, problem, sendProblem } from '../problem.js';

/**
 * The console's Content-Security-Policy: its own script and stylesheet only, no inline code or
 * styles, fetches to this origin only, never framed.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Where the built console is (`npm run build` bundles src/console into dist/console): next to the
 * compiled API (dist/api/routes -> dist/console), or, when the API runs from its TypeScript sources
 * (tests), the repository's dist/console. Null when neither holds a build (index.html and app.js).
 */
export function consoleAssetsDir(): string | null {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.resolve(here, '../../console'), path.resolve(here, '../../../dist/console')];
  // app.js only exists in a build (src/console holds index.html too, next to the sources).
  return (
    candidates.find((d) => existsSync(path.join(d, 'index.html')) && existsSync(path.join(d, 'app.js'))) ??
    null
  );
}

/**
 * Registers the web console (docs/console.md) at `/ui/`: static files only (index.html, app.js,
 * app.css), no token needed to load them — everything it shows comes from the authenticated API,
 * called with the token the user typed in (kept in sessionStorage, sent as `Authorization`). Every
 * answer carries {@link CONSOLE_CSP}, `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.
 * When the assets are not built, `/ui/...` answers 404 `AIRLOCK_ROUTE_NOT_FOUND` whose detail
 * names `npm run build`, and a warning is logged once.
 */
export function registerConsoleRoutes(app: Express, ctx: ApiContext): void {
  const dir = consoleAssetsDir();
  app.use('/ui', (req, res, next) => {
    res.setHeader('Content-Security-Policy', CONSOLE_CSP);
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    // `/ui` itself: the page's relative asset paths need the trailing slash.
    if (req.path === '/' && !req.originalUrl.startsWith('/ui/')) {
      res.redirect(301, '/ui/');
      return;
    }
    next();
  });
  if (dir) {
    app.use('/ui', express.static(dir, { index: 'index.html', redirect: false, dotfiles: 'deny' }));
  } else {
    ctx.logger.warn('web console assets not built (dist/console): /ui answers 404; run npm run build');
    app.use('/ui', (_req, res) => {
      sendProblem(
        res,
        problem(ApiErrorCodes.ROUTE_NOT_FOUND, 'the web console is not built: run "npm run build"'),
      );
    });
  }
}
