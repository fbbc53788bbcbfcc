// Root hooks for every mocha run (.mocharc.json "require"). Mocha waits for the
// event loop to drain before it exits, so a test that leaves a server, socket
// or timer behind would hold the run open forever and hide its own results.
// After the last test, give the process 30 s to exit by itself; if it has not,
// name what holds it and fail the run.
const EXIT_GRACE_MS = 30_000;

export const mochaHooks = {
  afterAll(): void {
    setTimeout(() => {
      const held = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
      console.error(`\nmocha: the tests ended ${EXIT_GRACE_MS / 1000} s ago and the process is still alive, held by: ${held.join(', ') || 'nothing named'}; a test left it running`);
      // Mocha's own exit listener sets the exit code to its failure count; this one runs after it.
      process.on('exit', () => {
        process.exitCode = 1;
      });
      process.exit(1);
    }, EXIT_GRACE_MS).unref();
  },
};
