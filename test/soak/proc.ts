// What the kernel says about a process the soak started, by its PID: its
// resident memory and how many sockets it holds open. Read from /proc, so
// no program in the pod is asked (a proxy under a flood may not answer).
import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * The node process behind a PID the lab started. `ip netns exec` and
 * setpriv exec the program in place, so it is normally the PID itself; if a
 * wrapper ever forks instead, its descendants are searched (by PID, from
 * /proc/<pid>/task/<tid>/children) for the first node.
 */
export async function nodePid(pid: number): Promise<number | undefined> {
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    const comm = await readFile(`/proc/${p}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'node' || comm.trim().startsWith('node-')) return p;
    const tasks = await readdir(`/proc/${p}/task`).catch(() => []);
    for (const t of tasks) {
      const children = await readFile(`/proc/${p}/task/${t}/children`, 'utf8').catch(() => '');
      queue.push(...children.split(' ').filter((c) => c.trim() !== '').map(Number));
    }
  }
  return undefined;
}

/** VmRSS in MB, or undefined when the process is gone. */
export async function rssMb(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const kb = status === undefined ? undefined : /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  return kb === undefined ? undefined : Number(kb) / 1024;
}

/** Open file descriptors that are sockets (listening, connected, or the discovery stream), or undefined when the process is gone. */
export async function openSockets(pid: number): Promise<number | undefined> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => undefined);
  if (fds === undefined) return undefined;
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return links.filter((l) => l.startsWith('socket:')).length;
}
