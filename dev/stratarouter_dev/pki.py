"""Keys and certificates for the local API server, made with the ``openssl`` CLI.

Our own CA (rather than the API server's self-signed cert) means the kubeconfig
can be written before the server starts, and clients verify TLS for real.
EC P-256 keys because they are generated in milliseconds.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = stratarouter-local
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {sans}
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

FRONT_PROXY_CLIENT = "front-proxy-client"
"""CN of the API server's proxy client certificate (its ``--requestheader-allowed-names``)."""

SERVING_SANS = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "IP:10.96.0.1",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    service_account_pub: Path

    @classmethod
    def at(cls, directory: Path) -> Pki:
        """The files :func:`make_pki` writes into ``directory``."""
        return cls(
            ca_cert=directory / "ca.crt",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            service_account_key=directory / "sa.key",
            service_account_pub=directory / "sa.pub",
        )

    def issue(self, name: str, subject: str, *, client: bool = False, sans: tuple[str, ...] = ()) -> KeyPair:
        """A key and a certificate signed by the CA: for a TLS client (``client``) or a server at ``sans``.

        ``subject`` is an openssl ``-subj`` string; for a Kubernetes client its CN is the user name and
        each O a group (``/O=system:nodes/CN=system:node:NAME``).
        """
        return _issue(self.ca_cert, name, subject, client=client, sans=sans)

    @property
    def front_proxy_ca_cert(self) -> Path:
        """The request-header CA (``--requestheader-client-ca-file``): a CA of its own, so no ordinary
        client certificate can pass for the API server's front proxy."""
        return self.ca_cert.parent / "front-proxy-ca.crt"

    @property
    def front_proxy_client(self) -> KeyPair:
        """The API server's client identity towards aggregated APIs (``--proxy-client-cert-file``)."""
        directory = self.ca_cert.parent
        return KeyPair(cert=directory / "front-proxy-client.crt", key=directory / "front-proxy-client.key")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM files."""

    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("the `openssl` command is required to make the local cluster's certificates")
    result = subprocess.run([exe, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def _ec_key(path: Path) -> Path:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)
    return path


def _issue(
    ca_cert: Path, name: str, subject: str, *, client: bool, sans: tuple[str, ...], ca_key: Path | None = None
) -> KeyPair:
    directory = ca_cert.parent
    ca_key = ca_key or directory / "ca.key"
    config = directory / f"{name}.cnf"
    config.write_text(OPENSSL_CONFIG.format(sans=",".join(sans) or "DNS:localhost"))
    key = _ec_key(directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-config", str(config), "-key", str(key), "-subj", subject, "-out", str(csr))
    cert = directory / f"{name}.crt"
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-set_serial", str(secrets.randbits(63)), "-days", "3650", "-extfile", str(config),
        "-extensions", "client" if client else "server", "-out", str(cert),
    )  # fmt: skip
    return KeyPair(cert=cert, key=key)


def make_pki(directory: Path, extra_sans: tuple[str, ...] = ()) -> Pki:
    """Create a CA, the API server's serving cert (127.0.0.1, the `kubernetes` Service, ``extra_sans``)
    signed by it, a service-account signing key, and the front proxy's CA and client certificate (the
    API server's identity towards aggregated APIs)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG.format(sans=",".join(SERVING_SANS)))
    pki = Pki.at(directory)
    ca_key = _ec_key(directory / "ca.key")
    _openssl(
        "req", "-x509", "-new", "-config", str(config), "-extensions", "ca", "-key", str(ca_key),
        "-subj", "/CN=stratarouter-local-ca", "-days", "3650", "-out", str(pki.ca_cert),
    )  # fmt: skip
    _issue(pki.ca_cert, "apiserver", "/CN=kube-apiserver", client=False, sans=(*SERVING_SANS, *extra_sans))
    front_proxy_key = _ec_key(directory / "front-proxy-ca.key")
    _openssl(
        "req", "-x509", "-new", "-config", str(config), "-extensions", "ca", "-key", str(front_proxy_key),
        "-subj", "/CN=strata-front-proxy-ca", "-days", "3650", "-out", str(pki.front_proxy_ca_cert),
    )  # fmt: skip
    _issue(
        pki.front_proxy_ca_cert, "front-proxy-client", f"/CN={FRONT_PROXY_CLIENT}", client=True, sans=(),
        ca_key=front_proxy_key,
    )  # fmt: skip
    _ec_key(pki.service_account_key)
    # The API server reads public keys only in this form, not PKCS#8.
    _openssl("pkey", "-in", str(pki.service_account_key), "-pubout", "-out", str(pki.service_account_pub))
    return pki
