"""Certificates and kubeconfigs for the test cluster, made with the ``openssl`` command (OpenSSL 3).

One CA signs everything: the API server's serving certificate, the client certificates of the admin and of each
component (their CN/O are the identities RBAC and the Node authorizer know), and the kubelet's serving certificate.
The ServiceAccount token signing key is a separate key pair. ECDSA P-256 keys: generated in milliseconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

DAYS = "365"


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def ensure_ca(pki: Path, name: str = "ca", cn: str = "mobius-test-cluster-ca") -> None:
    """A self-signed CA, made once (every certificate of the cluster chains to it)."""
    if (pki / f"{name}.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.crt"), "-subj", f"/CN={cn}",
        "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip


def issue(
    pki: Path,
    name: str,
    cn: str,
    *,
    orgs: tuple[str, ...] = (),
    sans: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    ca: str = "ca",
) -> tuple[Path, Path]:
    """A certificate signed by the CA: ``sans`` like ``IP:127.0.0.1`` or ``DNS:kubernetes``. Made once."""
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    if crt.exists() and key.exists():
        return crt, key
    subject = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
    usages = ",".join(u for u, on in (("serverAuth", server), ("clientAuth", client)) if on)
    args = [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(crt), "-CA", str(pki / f"{ca}.crt"), "-CAkey", str(pki / f"{ca}.key"),
        "-subj", subject, "-days", DAYS, "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment", "-addext", f"extendedKeyUsage={usages}",
    ]  # fmt: skip
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join(sans)]
    _openssl(*args)
    return crt, key


def ensure_service_account_keys(pki: Path) -> tuple[Path, Path]:
    """The key pair that signs ServiceAccount tokens (TokenRequest) and verifies them."""
    key, pub = pki / "sa.key", pki / "sa.pub"
    if not key.exists():
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
        _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
    return key, pub


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca: Path,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """A kubeconfig with one cluster, one user (client certificate or bearer token) and one current context."""
    if token is not None:
        creds = f"    token: {token}\n"
    elif cert is not None and key is not None:
        creds = f"    client-certificate: {cert}\n    client-key: {key}\n"
    else:
        raise ValueError("a kubeconfig needs a client certificate or a token")
    ns = f"    namespace: {namespace}\n" if namespace else ""
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: mobius-test\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority: {ca}\n"
        "users:\n"
        f"- name: {user}\n"
        "  user:\n"
        f"{creds}"
        "contexts:\n"
        f"- name: {user}@mobius-test\n"
        "  context:\n"
        "    cluster: mobius-test\n"
        f"    user: {user}\n"
        f"{ns}"
        f"current-context: {user}@mobius-test\n"
    )
    path.chmod(0o600)
    return path
