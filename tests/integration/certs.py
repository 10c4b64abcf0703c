"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line.

Nothing here is secret or long-lived: every test makes its own CA in its temporary directory.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "/usr/bin/openssl"
DAYS = "2"


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate and key, able to sign server and client certificates."""

    directory: Path
    cert: Path
    key: Path

    def server(self, name: str = "server", *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
               ) -> ServerCert:
        """A server certificate valid for ``hosts`` (IPs and DNS names in subjectAltName)."""
        sans = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
        cert, key = self._issue(name, hosts[0], f"subjectAltName={sans}\n"
                                "extendedKeyUsage=serverAuth\n")
        bundle = self.directory / f"{name}-bundle.pem"
        bundle.write_bytes(cert.read_bytes() + key.read_bytes())
        bundle.chmod(0o600)
        return ServerCert(cert, key, bundle)

    def client(self, name: str = "client", *, password: str | None = None) -> ClientCert:
        """A client certificate; its key is encrypted (AES-256) when ``password`` is given."""
        cert, key = self._issue(name, name, "extendedKeyUsage=clientAuth\n")
        if password is not None:
            encrypted = self.directory / f"{name}-encrypted.key"
            _openssl("pkey", "-in", str(key), "-out", str(encrypted), "-aes256",
                     "-passout", "stdin", stdin=password)
            key.unlink()
            key = encrypted
        return ClientCert(cert, key)

    def _issue(self, name: str, common_name: str, extensions: str) -> tuple[Path, Path]:
        key = self.directory / f"{name}.key"
        request = self.directory / f"{name}.csr"
        cert = self.directory / f"{name}.crt"
        ext = self.directory / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                       + extensions)
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                 "-out", str(request), "-subj", f"/CN={common_name}")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(self.cert),
                 "-CAkey", str(self.key), "-CAcreateserial", "-out", str(cert),
                 "-days", DAYS, "-sha256", "-extfile", str(ext))
        return cert, key


@dataclass(frozen=True)
class ServerCert:
    """A server certificate, its key, and both in one PEM (what socat's ``cert=`` wants)."""

    cert: Path
    key: Path
    bundle: Path


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its (possibly encrypted) key."""

    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "Vigil Test CA") -> CertificateAuthority:
    """A new self-signed CA in ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / "ca.crt"
    key = directory / "ca.key"
    _openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", DAYS, "-sha256", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return CertificateAuthority(directory, cert, key)


def _openssl(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run([OPENSSL, *args], input=(stdin or "").encode(),
                            capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.decode(errors='replace')}")


def _is_ip(host: str) -> bool:
    return all(part.isdigit() for part in host.split(".")) and host.count(".") == 3
