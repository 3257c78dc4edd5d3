#!/usr/bin/env node
// Man pages and bash completion from the same --help walk as docs/cli.md (scripts/help-walk.mjs), so they can
// only say what the programs say:
//   <out>/man/infisical-<name>.1          roff: NAME, SYNOPSIS, DESCRIPTION, COMMANDS, OPTIONS, EXIT STATUS,
//                                          ENVIRONMENT, FILES, SEE ALSO
//   <out>/completion/infisical-<name>     bash completion of subcommands and options (static: no yargs hook)
//   node scripts/man-pages.mjs [--out DIR] [--bin DIR] [--version V]
// --out defaults to build/; --bin runs the standalone binaries DIR/infisical-<name> instead of build/daemons/
// (scripts/package.sh, so the packaged pages describe the packaged binaries).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PROGRAMS, runner, walk } from './help-walk.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// yargs wraps the daemons' help at 120 columns: a line that long was cut mid-text, a shorter one at a space.
const WIDTH = 120;

// Exit statuses: lib/runtime/exit-status.ts (proxy, gateway) and daemons/ca.ts; the man test checks them against
// the module. infisical-connect prints its own table in --help ("Exit codes:"), which is used as it is.
const DAEMON_EXIT = [
  ['0', 'success'],
  ['1', 'any other error (systemd restarts the daemon)'],
  ['77', 'revoked: this component was revoked or its certificate renewed by another copy; enroll again'],
  ['78', 'configuration invalid, or the state directory is not enrolled (E_CONFIG_INVALID); not restarted'],
];
const CA_EXIT = [
  ['0', 'success'],
  ['1', 'any other error; the message names a stable error code'],
  ['78', 'configuration invalid (E_CONFIG_INVALID)'],
];

/** One help page as parsed parts: usage, description, and its sections' entries. */
export function parsePage(page) {
  const blocks = page.split(/\n\s*\n/).map((b) => b.split('\n'));
  const [usage = [''], ...rest] = blocks;
  const parsed = { usage: usage.join(' ').trim(), description: [], sections: {}, epilogue: [] };
  for (const lines of rest) {
    const head = /^([A-Z][A-Za-z ]*):$/.exec(lines[0] ?? '');
    if (!head) {
      (Object.keys(parsed.sections).length ? parsed.epilogue : parsed.description).push(lines.join(' ').trim());
      continue;
    }
    parsed.sections[head[1]] =
      head[1] === 'Examples' || !lines[1]?.startsWith('  ') ? lines.slice(1) : entries(lines.slice(1));
  }
  return parsed;
}

/** `  --flag   text … [type]` lines, with wrapped continuations joined, as { name, text, tags }. */
function entries(lines) {
  const out = [];
  let column = 0;
  let previous = '';
  for (const line of lines) {
    if (/^ {2}\S/.test(line)) {
      const name = line.trim().split(/\s{2,}/)[0];
      const at = line.indexOf(name) + name.length;
      const text = line.slice(at);
      column = at + (text.length - text.trimStart().length);
      out.push({ name, raw: text.trimStart() });
    } else if (out.length) {
      const piece = line.slice(column);
      out[out.length - 1].raw += previous.length >= WIDTH ? piece : ` ${piece.trimStart()}`;
    }
    previous = line;
  }
  return out.map(({ name, raw }) => {
    const m = /^(.*?)(?:\s{2,}|^)((?:\[[^\]]*\])(?: \[[^\]]*\])*)$/.exec(raw.trimEnd());
    return m ? { name, text: m[1].trim(), tags: m[2] } : { name, text: raw.trim(), tags: '' };
  });
}

/** Text for roff: backslashes and non-ASCII escaped, no line starting with a control character. */
function roff(text) {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/[^\x20-\x7e]/gu, (c) => `\\[u${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]`)
    .replace(/^([.'])/, '\\&$1');
}

function entryList(items) {
  return items.flatMap(({ name, text, tags }) => [
    '.TP',
    `.B ${roff(name)}`,
    roff([text, tags].filter(Boolean).join(' ') || ' '),
  ]);
}

function exitTable(program, top) {
  if (program === 'infisical-connect') {
    return (top.sections['Exit codes'] ?? []).flatMap((line) => {
      const [code, ...text] = line.trim().split(' ');
      return ['.TP', `.B ${code}`, roff(text.join(' '))];
    });
  }
  return (program === 'infisical-ca' ? CA_EXIT : DAEMON_EXIT).flatMap(([code, text]) => [
    '.TP',
    `.B ${code}`,
    roff(text),
  ]);
}

function files(program, name) {
  if (name === 'connect') {
    return [
      'None of its own: the client secret is read from the file that',
      '.B \\-\\-client\\-secret\\-file',
      'names.',
    ];
  }
  return [
    '.TP',
    `.I /etc/infisical/${name}.conf`,
    'configuration (flags > environment > this file > defaults); every key documented, commented out',
    '.TP',
    `.I /var/lib/${roff(program)}/`,
    `state: the SQLite database and the sealing key (mode 0700, the service user's)`,
    '.TP',
    `.I /lib/systemd/system/${roff(program)}.service`,
    'the systemd unit (rpm: /usr/lib/systemd/system)',
    '.TP',
    `.I /usr/share/doc/${roff(program)}/install.md`,
    'installing, first start, operating',
  ];
}

export function renderMan(program, name, what, pages, version) {
  const top = parsePage(pages[0].page);
  const global = top.sections['Options'] ?? [];
  const globalNames = new Set(global.map((o) => o.name));
  const lines = [
    `.\\" Generated by scripts/man-pages.mjs from ${program} --help; do not edit.`,
    `.TH ${roff(program.toUpperCase())} 1 "" "${roff(`${program} ${version}`)}" "Infisical gateway suite"`,
    '.SH NAME',
    `${roff(program)} \\- ${roff(what)}`,
    '.SH SYNOPSIS',
    `.B ${roff(program)}`,
    '.I command',
    '.RI [ options ]',
    '.SH DESCRIPTION',
    ...top.description.flatMap((p) => [roff(p), '.PP']),
    `Every command takes \\fB\\-\\-help\\fR; the same pages, with a walk-through, are in /usr/share/doc/${roff(program)}/.`,
    '.SH COMMANDS',
  ];
  for (const { path, page } of pages.slice(1)) {
    const p = parsePage(page);
    lines.push(`.SS "${roff(p.usage)}"`, ...p.description.map(roff));
    const positionals = p.sections['Positionals'] ?? [];
    const own = (p.sections['Options'] ?? []).filter((o) => !globalNames.has(o.name));
    if (positionals.length || own.length) lines.push('.RS', ...entryList([...positionals, ...own]), '.RE');
    for (const example of p.sections['Examples'] ?? []) lines.push('.PP', `Example: ${roff(example.trim())}`);
    if (path.length === 0) throw new Error('the top page is not a command');
  }
  lines.push('.SH OPTIONS', ...entryList(global));
  lines.push('.SH EXIT STATUS', ...exitTable(program, top));
  lines.push('.SH ENVIRONMENT');
  const environment = top.epilogue.find((e) => e.startsWith('Environment:'));
  lines.push(
    environment
      ? roff(environment.replace(/^Environment:\s*/, ''))
      : roff(
          `Every configuration key can be set as INFISICAL_${name.toUpperCase()}_<KEY> (flags > environment > file > defaults).`,
        ),
  );
  lines.push('.SH FILES', ...files(program, name));
  lines.push(
    '.SH SEE ALSO',
    ...PROGRAMS.filter(([p]) => p !== program).map(
      ([p], i, all) => `.BR ${roff(p)} (1)${i < all.length - 1 ? ',' : ''}`,
    ),
  );
  return `${lines.join('\n')}\n`;
}

/**
 * A bash completion function: after the known subcommand words, offer that command's subcommands and options
 * (an option that takes a value swallows the next word).
 */
export function renderCompletion(program, pages) {
  const fn = `_${program.replace(/-/g, '_')}`;
  const cases = [];
  const valued = new Set();
  for (const { path, page } of pages) {
    const p = parsePage(page);
    const children = pages
      .filter((q) => q.path.length === path.length + 1 && path.every((w, i) => q.path[i] === w))
      .map((q) => q.path.at(-1));
    const options = (p.sections['Options'] ?? []).map((o) => o.name).filter((o) => o.startsWith('--'));
    for (const o of p.sections['Options'] ?? []) if (!/\[boolean\]/.test(o.tags)) valued.add(o.name);
    cases.push(`    '${path.join(' ')}') words='${[...children, ...options].join(' ')}' ;;`);
  }
  const children = pages.filter((q) => q.path.length > 0).map((q) => `'${q.path.join(' ')}'`);
  return `# bash completion for ${program}; generated by scripts/man-pages.mjs from its --help, do not edit.
${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path='' i w skip=''
  local -A known=(${children.map((c) => `[${c}]=1`).join(' ')})
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    if [ -n "$skip" ]; then skip=''; continue; fi
    case "$w" in
      ${[...valued].join('|') || '--none'}) skip=1 ;;
      -*) ;;
      *) if [ -n "\${known["\${path:+$path }$w"]:-}" ]; then path="\${path:+$path }$w"; fi ;;
    esac
  done
  local words=''
  case "$path" in
${cases.join('\n')}
  esac
  mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}
complete -F ${fn} ${program}
`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, bin: { type: 'string' }, version: { type: 'string' } },
  });
  const out = values.out ?? join(ROOT, 'build');
  const version = values.version ?? JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
  mkdirSync(join(out, 'man'), { recursive: true });
  mkdirSync(join(out, 'completion'), { recursive: true });
  for (const [program, name, what] of PROGRAMS) {
    const pages = walk(program, runner(ROOT, program, name, values.bin));
    writeFileSync(join(out, 'man', `${program}.1`), renderMan(program, name, what, pages, version));
    writeFileSync(join(out, 'completion', program), renderCompletion(program, pages));
  }
  process.stdout.write(`wrote ${out}/man/*.1 and ${out}/completion/* for ${PROGRAMS.length} programs\n`);
}
