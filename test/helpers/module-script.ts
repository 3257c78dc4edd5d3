/** Runs an ES module script in a child Node process (a second writer, another replica); resolves its exit code. */
import { spawn } from 'node:child_process';

export function runModuleScript(script: string, ...args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], { stdio: 'inherit' });
    child.on('exit', resolve);
  });
}
