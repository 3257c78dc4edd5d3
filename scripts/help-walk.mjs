// What every program says about itself: its --help pages, walked through every subcommand a page lists. Shared
// by scripts/reference-docs.mjs (docs/cli.md) and scripts/man-pages.mjs (man pages, shell completion), so the
// three cannot disagree.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export const PROGRAMS = [
  ['infisical-ca', 'ca', 'certificate authority and control plane (daemon + admin commands)'],
  ['infisical-proxy', 'proxy', 'the relay (daemon)'],
  ['infisical-gateway', 'gateway', 'the gateway inside the private network (daemon)'],
  ['infisical-connect', 'connect', 'the platform client'],
];

// Help must not depend on who runs it: no INFISICAL_* variables, a fixed width (yargs wraps at 120 when piped).
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INFISICAL_')));

/**
 * How to run a program: the built file under Node (default), or, with binDir, the standalone binary
 * binDir/<program> (what the packages ship, at package time).
 */
export function runner(root, program, name, binDir) {
  return binDir
    ? (args) => execFileSync(join(binDir, program), args, { env, encoding: 'utf8' }).trimEnd()
    : (args) =>
        execFileSync(process.execPath, [join(root, 'build/daemons', `${name}.js`), ...args], {
          env,
          encoding: 'utf8',
        }).trimEnd();
}

/** The subcommand paths a help page lists under "Commands:" (`  prog a b <arg>  text` → ['a', 'b']). */
export function subcommands(page, program) {
  const lines = page.split('\n');
  const start = lines.indexOf('Commands:');
  if (start < 0) return [];
  const paths = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break;
    // yargs pads the command column with at least two spaces before the description.
    const [head, ...words] = line
      .trim()
      .split(/\s{2,}/)[0]
      .split(/\s+/);
    if (head !== program) continue;
    const end = words.findIndex((w) => /^[<[]/.test(w));
    paths.push(end < 0 ? words : words.slice(0, end));
  }
  return paths;
}

/** Every help page of a program, depth first as the pages list them: [{ path: ['policy', 'add'], page }]. */
export function walk(program, run) {
  const pages = [];
  const seen = new Set();
  const visit = (path) => {
    const key = path.join(' ');
    if (seen.has(key)) return;
    seen.add(key);
    const page = run([...path, '--help']);
    pages.push({ path, page });
    for (const sub of subcommands(page, program)) if (sub.length > path.length) visit(sub);
  };
  visit([]);
  return pages;
}
