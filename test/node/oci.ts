// Writes an OCI image archive (an image layout in a tar, as `ctr images
// import` reads it) from layer tars made by test/node/build.sh, without a
// container engine or a registry:
//
//   node --import tsx test/node/oci.ts --out IMAGE.tar --name docker.io/library/x:tag \
//     --layer a.tar [--layer b.tar ...] [--entrypoint X ...] [--cmd X ...] \
//     [--user U:G] [--workdir DIR] [--env K=V ...]
//
// Layers are uncompressed tars (media type application/vnd.oci.image.layer.v1.tar);
// their digests are cached beside them (LAYER.sha256, keyed by size and mtime),
// so a large cached layer is hashed once. The index names the image with
// io.containerd.image.name (what ctr import uses) and
// org.opencontainers.image.ref.name.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, linkSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

interface Blob {
  digest: string;
  size: number;
}

async function layerDigest(path: string): Promise<Blob> {
  const st = statSync(path);
  const key = `${st.size} ${st.mtimeMs}`;
  const cacheFile = `${path}.sha256`;
  try {
    const [k, digest] = readFileSync(cacheFile, 'utf8').trim().split('\n');
    if (k === key && digest?.startsWith('sha256:')) return { digest, size: st.size };
  } catch {
    // not cached yet
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  const digest = `sha256:${hash.digest('hex')}`;
  writeFileSync(cacheFile, `${key}\n${digest}\n`);
  return { digest, size: st.size };
}

function jsonBlob(dir: string, value: unknown): Blob {
  const bytes = Buffer.from(JSON.stringify(value));
  const hex = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(dir, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      name: { type: 'string' },
      layer: { type: 'string', multiple: true, default: [] },
      entrypoint: { type: 'string', multiple: true, default: [] },
      cmd: { type: 'string', multiple: true, default: [] },
      user: { type: 'string' },
      workdir: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
    },
    strict: true,
  });
  const { out, name } = values;
  if (!out || !name) throw new Error('usage: oci.ts --out IMAGE.tar --name REF --layer LAYER.tar ...');
  if (values.layer.length === 0) throw new Error('oci.ts: at least one --layer');
  const tag = name.includes(':') ? name.slice(name.lastIndexOf(':') + 1) : 'latest';
  const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch];
  if (!arch) throw new Error(`oci.ts: unsupported architecture ${process.arch}`);

  const dir = mkdtempSync(join(dirname(out), '.oci-'));
  try {
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
    const layers: Blob[] = [];
    for (const path of values.layer) {
      const blob = await layerDigest(path);
      const target = join(dir, 'blobs', 'sha256', blob.digest.slice('sha256:'.length));
      try {
        linkSync(path, target);
      } catch {
        copyFileSync(path, target);
      }
      layers.push(blob);
    }
    const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...values.env];
    const config = jsonBlob(dir, {
      architecture: arch,
      os: 'linux',
      config: {
        Env: env,
        ...(values.entrypoint.length ? { Entrypoint: values.entrypoint } : {}),
        ...(values.cmd.length ? { Cmd: values.cmd } : {}),
        ...(values.user ? { User: values.user } : {}),
        ...(values.workdir ? { WorkingDir: values.workdir } : {}),
        Labels: { 'org.opencontainers.image.title': name },
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      history: layers.map(() => ({ created_by: 'test/node/build.sh' })),
    });
    const manifest = jsonBlob(dir, {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
    });
    writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      join(dir, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            platform: { architecture: arch, os: 'linux' },
            annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag },
          },
        ],
      }),
    );
    execFileSync('tar', ['--hard-dereference', '-C', dir, '-cf', `${out}.tmp`, 'oci-layout', 'index.json', 'blobs']);
    renameSync(`${out}.tmp`, out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
