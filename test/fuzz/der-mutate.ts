/**
 * Structure-aware mutation of DER: decode with forge (leniently), change one node of the tree, re-encode. Used
 * with re-signing (x509 and CSR targets), so mutated fields get past the signature check and reach the code that
 * reads extensions, names, grants and key usages. Driven by a tape of numbers, like mutate.ts.
 */
import forge from 'node-forge';

const { asn1 } = forge;
type Node = forge.asn1.Asn1;

const bin = (b: Buffer): string => b.toString('latin1');
export const toBuffer = (n: Node): Buffer => Buffer.from(asn1.toDer(n).getBytes(), 'latin1');

export function decodeLenient(der: Buffer): Node {
  return asn1.fromDer(bin(der), { strict: false, parseAllBytes: false, decodeBitStrings: false } as never);
}

class Tape {
  #i = 0;
  constructor(private readonly values: readonly number[]) {}
  next(mod: number): number {
    const v = this.values[this.#i++ % Math.max(1, this.values.length)] ?? 0;
    return mod <= 0 ? 0 : v % mod;
  }
}

function descendants(n: Node, out: { node: Node; parent: Node | undefined }[] = [], parent?: Node) {
  out.push({ node: n, parent });
  if (n.constructed && Array.isArray(n.value)) for (const c of n.value as Node[]) descendants(c, out, n);
  return out;
}

const PRIMITIVE_VALUES = (t: Tape): string[] => [
  '',
  '\x00',
  '\xff',
  '\x80',
  '\x00\x00\x00\x01',
  '\xff'.repeat(1 + t.next(40)),
  '\x7f'.repeat(9),
  Array.from({ length: 1 + t.next(64) }, () => String.fromCharCode(t.next(256))).join(''),
];

/** One structural change somewhere under `root` (mutated in place); returns root. */
export function mutateTree(root: Node, tapeValues: readonly number[], extra: Node[] = []): Node {
  const t = new Tape(tapeValues);
  const count = 1 + t.next(3);
  for (let k = 0; k < count; k++) {
    const all = descendants(root);
    const { node, parent } = all[t.next(all.length)]!;
    const op = t.next(7);
    if (!node.constructed) {
      if (op <= 3) {
        const values = PRIMITIVE_VALUES(t);
        node.value = values[t.next(values.length)]!;
      } else if (op === 4) {
        node.type = t.next(31);
      } else if (op === 5) {
        node.tagClass = [asn1.Class.UNIVERSAL, asn1.Class.CONTEXT_SPECIFIC][t.next(2)]!;
      } else if (parent) {
        const siblings = parent.value as Node[];
        siblings.splice(siblings.indexOf(node), 1);
      }
      continue;
    }
    const children = node.value as Node[];
    if (op === 0 && children.length > 0) children.splice(t.next(children.length), 1);
    else if (op === 1 && children.length > 0)
      children.splice(t.next(children.length + 1), 0, children[t.next(children.length)]!);
    else if (op === 2 && children.length > 1) {
      const [i, j] = [t.next(children.length), t.next(children.length)];
      [children[i], children[j]] = [children[j]!, children[i]!];
    } else if (op === 3) {
      const values = PRIMITIVE_VALUES(t);
      children.splice(
        t.next(children.length + 1),
        0,
        asn1.create(asn1.Class.UNIVERSAL, t.next(31), false, values[t.next(values.length)]!),
      );
    } else if (op === 4 && extra.length > 0) {
      children.push(extra[t.next(extra.length)]!);
    } else if (op === 5) {
      node.type = t.next(31);
    } else {
      node.tagClass = [asn1.Class.UNIVERSAL, asn1.Class.CONTEXT_SPECIFIC][t.next(2)]!;
    }
  }
  return root;
}

/** Deep copy of a forge node (mutations must not touch the seed). */
export function cloneNode(n: Node): Node {
  return asn1.create(
    n.tagClass,
    n.type,
    n.constructed,
    n.constructed ? (n.value as Node[]).map(cloneNode) : (n.value as string),
  );
}
