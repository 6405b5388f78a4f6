/**
 * Environment variables that `secrets run` will not let a secret set: each one
 * changes which program runs, which code a loader or interpreter loads before the
 * command's own, or which certificates it trusts. A secret of that name (a typo,
 * or a value planted by whoever can write secrets) would take over the command.
 * `--allow-override NAME` lets one through on purpose.
 *
 * Sources: the variables glibc's ld.so drops for setuid programs (LD_*, GCONV_PATH,
 * …), dyld's DYLD_*, the start-up files and option variables of sh, bash, Node,
 * Python, Perl, Ruby and the JVM, and the commands git runs for you. A trailing `*`
 * matches any rest of the name. Names are matched exactly (environment names are
 * case-sensitive).
 */
export const PROTECTED_ENV_NAMES: readonly string[] = [
  // Shells: where commands are found, start-up files, word splitting, traced and prompt code.
  "PATH",
  "HOME",
  "SHELL",
  "IFS",
  "ENV",
  "BASH_ENV",
  "CDPATH",
  "PS4",
  "PROMPT_COMMAND",
  "SHELLOPTS",
  "BASHOPTS",
  "GLOBIGNORE",
  // Dynamic loaders (glibc, macOS dyld) and glibc's loadable modules.
  "LD_*",
  "DYLD_*",
  "GCONV_PATH",
  "GLIBC_TUNABLES",
  "LOCPATH",
  "NLSPATH",
  "HOSTALIASES",
  // Interpreters: code or options loaded before the program's own.
  "NODE_OPTIONS",
  "NODE_PATH",
  "NODE_EXTRA_CA_CERTS",
  "NODE_TLS_REJECT_UNAUTHORIZED",
  "PYTHONPATH",
  "PYTHONSTARTUP",
  "PYTHONHOME",
  "PYTHONINSPECT",
  "PYTHONUSERBASE",
  "PERL5LIB",
  "PERL5OPT",
  "PERLLIB",
  "PERL5DB",
  "RUBYOPT",
  "RUBYLIB",
  "JAVA_TOOL_OPTIONS",
  "_JAVA_OPTIONS",
  "JDK_JAVA_OPTIONS",
  "CLASSPATH",
  // Commands git and ssh run on your behalf.
  "GIT_SSH_COMMAND",
  "GIT_SSH",
  "GIT_ASKPASS",
  "SSH_ASKPASS",
  "GIT_EXEC_PATH",
  "GIT_PROXY_COMMAND",
  "GIT_CONFIG_PARAMETERS",
  "GIT_CONFIG_COUNT",
  "GIT_CONFIG_KEY_*",
  "GIT_CONFIG_VALUE_*",
  "GIT_CONFIG_GLOBAL",
  "GIT_CONFIG_SYSTEM",
  // Trust stores of OpenSSL-based clients.
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
];

/** True when `name` is in PROTECTED_ENV_NAMES, exactly or by a `PREFIX*` entry. */
export function isProtectedEnvName(name: string): boolean {
  return PROTECTED_ENV_NAMES.some((entry) => (entry.endsWith("*") ? name.startsWith(entry.slice(0, -1)) : name === entry));
}
