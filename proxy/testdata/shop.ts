// A small mesh on loopback for the tests that attack sidecars: an app that
// answers "ok", api sidecars in STRICT mode in front of it, and a web
// sidecar whose app calls service api.shop. Original destinations come from
// the test (no iptables on loopback).
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CertificateAuthority } from '../../ca/authority.js';
import { silentLogger } from '../../lib/log.js';
import type { WorkloadCredentials } from '../identity/types.js';
import { startSidecar, type Sidecar } from '../sidecar.js';
import { FixedConfig, FixedIdentity, issueCredentials } from './mesh.js';

export const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
export const API = 'spiffe://cluster.local/ns/shop/sa/api';
/** api.shop's ClusterIP; never dialled: the web sidecar is told it is the original destination. */
export const SERVICE_IP = '10.96.0.10';

/** The app: reads the whole request, answers "ok". */
export async function startOkApp(): Promise<{ server: HttpServer; port: number }> {
  const server = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** Service api.shop (port 80, protocol auto), whose one endpoint (identity API) is 127.0.0.1:`port`. */
export const apiService = (port: number): object => ({
  services: [
    {
      name: 'api',
      namespace: 'shop',
      clusterIPs: [SERVICE_IP],
      ports: [{ port: 80, name: 'http', protocol: 'auto', targetPort: port }],
      endpoints: [{ address: '127.0.0.1', identity: API }],
    },
  ],
});

/** A sidecar with identity API in STRICT mode whose inbound connections go to the app on `appPort`. */
export function startApiSidecar(ca: CertificateAuthority, appPort: number): Promise<Sidecar> {
  return startSidecar({
    identity: new FixedIdentity(issueCredentials(ca, API)),
    config: new FixedConfig({ mesh: { mtlsMode: 'STRICT' } }),
    log: silentLogger,
    host: '127.0.0.1',
    outboundPort: 0,
    inboundPort: 0,
    inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
  });
}

/** A sidecar with `creds` (identity WEB) whose app's every outbound connection is to api.shop, served by `apiInboundPort`. */
export function startWebSidecar(creds: WorkloadCredentials, apiInboundPort: number): Promise<Sidecar> {
  return startSidecar({
    identity: new FixedIdentity(creds),
    config: new FixedConfig(apiService(apiInboundPort)),
    log: silentLogger,
    host: '127.0.0.1',
    outboundPort: 0,
    inboundPort: 0,
    outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
  });
}
