/**
 * The one address syntax of the SDK and the CLI:
 *
 *   host:port           plaintext (unless the caller turns TLS on)
 *   http://host:port    plaintext
 *   https://host:port   TLS
 *   host                the default port, 50051 (also after a scheme)
 *   [::1]:50051         an IPv6 address, in brackets (also after a scheme)
 *
 * Anything else (a path, a query, credentials, a port outside 1..65535, another scheme, an IPv6 address
 * without brackets) is a TypeError naming the accepted forms.
 */

/** The port of the service when an address names none. */
export const DEFAULT_PORT = 50051;

/** An address as parsed by `parseAddress`. */
export interface ServiceAddress {
  /** The host name or IP address; an IPv6 address without its brackets. */
  readonly host: string;
  readonly port: number;
  /** true for https://, false for http://, undefined when the address has no scheme (the caller's TLS setting decides). */
  readonly tls: boolean | undefined;
  /** `host:port` (`[v6]:port` for IPv6): what grpc-js dials and what messages name. */
  readonly target: string;
}

const FORMS = "host:port, http://host:port, https://host:port, host (port 50051) or [ipv6]:port";

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const HOST_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252}[A-Za-z0-9_])?$/;
const IPV6 = /^[0-9A-Fa-f:.]{2,45}(?:%[A-Za-z0-9_.-]{1,64})?$/;

/** Parses `address` in one of the forms above; a TypeError names the accepted forms otherwise. */
export function parseAddress(address: string): ServiceAddress {
  if (typeof address !== "string") throw new TypeError(`address must be a string: ${FORMS}`);
  const bad = (why: string) => new TypeError(`invalid address ${JSON.stringify(address.slice(0, 200))}: ${why}; use ${FORMS}`);

  let rest = address;
  let tls: boolean | undefined;
  const scheme = SCHEME.exec(rest);
  if (scheme) {
    const name = (scheme[1] as string).toLowerCase();
    if (name !== "http" && name !== "https") throw bad(`the scheme ${name}:// is not supported`);
    tls = name === "https";
    rest = rest.slice(scheme[0].length);
    if (rest.endsWith("/")) rest = rest.slice(0, -1); // "http://host:port/" as browsers print it
  }
  if (rest === "") throw bad("it names no host");
  if (/[/?#@\s]/.test(rest)) throw bad("it holds a path, query, credentials or spaces");

  let host: string;
  let portText: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw bad("an IPv6 address lacks its closing bracket");
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) throw bad("text follows the IPv6 address");
    portText = after === "" ? undefined : after.slice(1);
    if (!IPV6.test(host) || !host.includes(":")) throw bad("the bracketed host is not an IPv6 address");
  } else {
    const colons = rest.split(":").length - 1;
    if (colons > 1) throw bad("an IPv6 address must be in brackets");
    [host, portText] = colons === 1 ? (rest.split(":") as [string, string]) : [rest, undefined];
    if (!HOST_NAME.test(host)) throw bad("the host is not a host name or IP address");
  }

  const port = portText === undefined ? DEFAULT_PORT : Number(portText);
  if (portText !== undefined && (!/^[0-9]{1,5}$/.test(portText) || port < 1 || port > 65535)) throw bad("the port must be a number from 1 to 65535");
  const target = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return Object.freeze({ host, port, tls, target });
}
