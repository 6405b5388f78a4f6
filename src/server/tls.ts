import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";

/**
 * Transport security: TLS from a certificate and key, and, with a client CA,
 * mutual TLS where every client must present a certificate that CA signed. The
 * client identity of an mTLS call is its certificate's first URI SAN (SPIFFE
 * style), else its first DNS SAN, else its subject CN.
 */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCaFile: string | undefined;
}

export function serverCredentials(tls: TlsFiles | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const ca = tls.clientCaFile ? readFileSync(tls.clientCaFile) : null;
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }],
    ca !== null,
  );
}

/** The identity of a verified client certificate, or undefined (no mTLS, or no usable name). */
export function clientIdentity(cert: PeerCertificate | undefined): string | undefined {
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const sans = (cert.subjectaltname ?? "").split(",").map((s) => s.trim());
  const uri = sans.find((s) => s.startsWith("URI:"));
  if (uri) return uri.slice(4);
  const dns = sans.find((s) => s.startsWith("DNS:"));
  if (dns) return dns.slice(4);
  const cn = cert.subject?.CN;
  return typeof cn === "string" && cn !== "" ? cn : undefined;
}
