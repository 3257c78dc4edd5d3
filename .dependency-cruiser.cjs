// The layer order of lib/ (docs/architecture.md draws it), lowest first:
//   errors; pki, sshcert, store, runtime; protocol, sshwire; enrolled; ca, proxy, gateway, client; daemons/.
// A module imports only from its own layer or a lower one. `make lint` runs this on lib/ and daemons/.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      // A cycle means two modules can no longer be read, tested or moved apart.
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      // Error codes are the floor: every layer names its refusals with them, so they import nothing of ours.
      name: 'errors-is-the-floor',
      severity: 'error',
      from: { path: '^lib/errors/' },
      to: { path: '^(lib|daemons)/', pathNot: '^lib/errors/' },
    },
    {
      // Certificates, storage and the runtime are the base: they never reach up into the shared protocol.
      name: 'base-stays-below-protocol',
      severity: 'error',
      from: { path: '^lib/(pki|sshcert|store|runtime)/' },
      to: { path: '^lib/(protocol|sshwire|enrolled|ca|proxy|gateway|client)/' },
    },
    {
      // The protocol and the ssh2 glue are shared by every side, so they know no side.
      name: 'protocol-knows-no-side',
      severity: 'error',
      from: { path: '^lib/(protocol|sshwire)/' },
      to: { path: '^lib/(enrolled|ca|proxy|gateway|client)/' },
    },
    {
      // The enrolled-daemon code serves both the proxy and the gateway, so it imports neither.
      name: 'enrolled-serves-both',
      severity: 'error',
      from: { path: '^lib/enrolled/' },
      to: { path: '^lib/(ca|proxy|gateway|client)/' },
    },
    {
      // The CA, the proxy, the gateway and the client meet only over the wire, never through imports.
      name: 'sides-never-import-each-other',
      severity: 'error',
      from: { path: '^lib/(ca|proxy|gateway|client)/' },
      to: { path: '^lib/(ca|proxy|gateway|client)/', pathNot: '^lib/$1/' },
    },
    {
      // A new room in lib/ takes a place in the order above before it imports anything.
      name: 'lib-rooms-are-known',
      severity: 'error',
      from: {
        path: '^lib/',
        pathNot: '^lib/(errors|pki|sshcert|store|runtime|protocol|sshwire|enrolled|ca|proxy|gateway|client)/',
      },
      to: {},
    },
    {
      // Daemons wire the parts together; the parts never depend on a daemon's entry point.
      name: 'lib-not-to-daemons',
      severity: 'error',
      from: { path: '^lib/' },
      to: { path: '^daemons/' },
    },
    {
      // Shipped code never loads tests or benchmarks (they are not in the package).
      name: 'no-test-code-in-product',
      severity: 'error',
      from: { path: '^(lib|daemons)/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    // Type-only imports count: they are part of the layering even when the compiler erases them.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^build/' },
  },
};
