"""Check the certificate chain a server presents, the way APEX's wallet will judge it.

    python nginx/check_cert.py ml.example.com:443 [--ca dev-ca.pem] [--servername NAME]

Reports whether the chain is complete (verifies against the trust store without help), whether
it matches the host name, and how many days are left. An incomplete chain (the server sends
its certificate without the intermediates) is what makes APEX fail with ORA-29024. Exit 0 when
all three pass and at least 14 days remain, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from datetime import UTC, datetime

from cryptography import x509

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
MIN_DAYS = 14


def fetch_chain(host: str, port: int, servername: str, ca: str | None) -> tuple[list, str]:
    """The certificates the server sends, and OpenSSL's verification result."""
    command = [
        "openssl",
        "s_client",
        "-connect",
        f"{host}:{port}",
        "-servername",
        servername,
        "-showcerts",
        "-verify_hostname",
        servername,
    ]
    command += ["-CAfile", ca] if ca else ["-CApath", "/etc/ssl/certs"]
    done = subprocess.run(command, input="", capture_output=True, text=True, timeout=20)
    certs = [x509.load_pem_x509_certificate(p.encode()) for p in _PEM.findall(done.stdout)]
    found = re.search(r"Verify return code: (\d+) \(([^)]*)\)", done.stdout)
    verdict = (
        "ok"
        if found and found.group(1) == "0"
        else (found.group(2) if found else (done.stderr.strip().splitlines() or ["no answer"])[-1])
    )
    return certs, verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check-cert", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port")
    parser.add_argument("--ca", help="trust this CA file instead of the system store")
    parser.add_argument("--servername", help="host name to check (default: the host)")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        parser.error("target must be host:port, e.g. ml.example.com:443")
    servername = args.servername or host
    try:
        certs, verdict = fetch_chain(host, int(port), servername, args.ca)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"check-cert: error: cannot run openssl: {error}", file=sys.stderr)
        return 2
    if not certs:
        print(f"check-cert: error: no certificate from {args.target}: {verdict}", file=sys.stderr)
        return 1
    leaf = certs[0]
    days_left = (leaf.not_valid_after_utc - datetime.now(UTC)).days
    names = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    hostname_ok = "hostname mismatch" not in verdict.lower()
    chain_ok = verdict == "ok"
    print(f"subject:      {leaf.subject.rfc4514_string()}")
    print(f"issuer:       {leaf.issuer.rfc4514_string()}")
    print(f"names:        {', '.join(names) or '(no subjectAltName)'}")
    print(f"chain sent:   {len(certs)} certificate(s)")
    print(f"chain valid:  {'yes' if chain_ok else 'NO: ' + verdict}")
    host_text = f"matches {servername}" if hostname_ok else f"NOT verified for {servername}"
    print(f"host name:    {host_text}")
    print(f"expires:      {leaf.not_valid_after_utc:%Y-%m-%d} ({days_left} days left)")
    if "verify the first certificate" in verdict or "local issuer" in verdict:
        print(
            "hint:         the server sends no intermediate certificates; configure the full "
            "chain (ssl_certificate = server certificate followed by the intermediates)"
        )
    return 0 if chain_ok and hostname_ok and days_left >= MIN_DAYS else 1


if __name__ == "__main__":
    sys.exit(main())
