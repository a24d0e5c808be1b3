"""The cluster's PKI: a CA made on first start, and the certificates every party uses.

Layout under ``<data-dir>/pki`` (as kubeadm's /etc/kubernetes/pki):

- ``ca.crt`` / ``ca.key``: the cluster CA (EC P-256, 10 years).
- ``apiserver.crt`` / ``.key``: serving certificate; SANs 127.0.0.1, localhost, the advertised
  IPs, ``kubernetes``, ``kubernetes.default``, ``kubernetes.default.svc``,
  ``kubernetes.default.svc.cluster.local`` and the first service IP.
- ``<name>.crt`` / ``.key`` for client identities: ``admin`` (CN=admin, O=system:masters),
  ``scheduler`` (CN=system:kube-scheduler), ``controller-manager``
  (CN=system:kube-controller-manager), ``proxy`` (CN=system:kube-proxy),
  ``apiserver-kubelet-client`` (CN=kube-apiserver-kubelet-client, O=system:masters: the API server
  calling kubelets), and per node
  ``kubelet-<node>`` (CN=system:node:<node>, O=system:nodes).
- ``sa.key`` / ``sa.pub``: the ServiceAccount token signing key.

Every private key is written with mode 0600 (created so, never widened). Existing files are
reused, so restarting keeps the same identities; a serving cert whose SANs no longer cover the
requested ones is reissued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365

# identity name -> (common name, organizations)
CLIENT_IDENTITIES: dict[str, tuple[str, list[str]]] = {
    "admin": ("admin", ["system:masters"]),
    "scheduler": ("system:kube-scheduler", []),
    "controller-manager": ("system:kube-controller-manager", []),
    "proxy": ("system:kube-proxy", []),
    # the API server's identity towards kubelets (pods/log), as kubeadm's apiserver-kubelet-client
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
}


def _write_private(path: str, data: bytes) -> None:
    """Write a secret file created with 0600 from the start (no window where it is readable)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_public(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str, orgs: list[str] | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs or []]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass(frozen=True)
class CertPair:
    cert: str
    key: str


class PKI:
    """The PKI in one directory; create with :meth:`ensure`."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.ca = CertPair(os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key"))
        self.sa_key = os.path.join(directory, "sa.key")
        self.sa_pub = os.path.join(directory, "sa.pub")
        self._ca_cert: x509.Certificate | None = None
        self._ca_key: ec.EllipticCurvePrivateKey | None = None

    def pair(self, name: str) -> CertPair:
        return CertPair(os.path.join(self.dir, f"{name}.crt"), os.path.join(self.dir, f"{name}.key"))

    # -- CA -------------------------------------------------------------------------------
    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self._ca_cert is None or self._ca_key is None:
            with open(self.ca.cert, "rb") as f:
                self._ca_cert = x509.load_pem_x509_certificate(f.read())
            with open(self.ca.key, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self._ca_key = key
        return self._ca_cert, self._ca_key

    def _ensure_ca(self) -> None:
        if os.path.exists(self.ca.cert) and os.path.exists(self.ca.key):
            return
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        name = _name("hyperkube-ca")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca.key, _key_pem(key))
        _write_public(self.ca.cert, cert.public_bytes(serialization.Encoding.PEM))

    # -- leaves ---------------------------------------------------------------------------
    def issue(
        self,
        name: str,
        cn: str,
        orgs: list[str] | None = None,
        *,
        server_sans: list[str] | None = None,
        client: bool = True,
        days: int = LEAF_DAYS,
        valid_from: dt.datetime | None = None,
    ) -> CertPair:
        """Issue (overwrite) a leaf certificate signed by the CA."""
        ca_cert, ca_key = self._load_ca()
        key = _new_key()
        now = valid_from or dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if server_sans is not None:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(x509.SubjectAlternativeName(_sans(server_sans)), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        pair = self.pair(name)
        _write_private(pair.key, _key_pem(key))
        _write_public(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        return pair

    def ensure_client(self, name: str, cn: str, orgs: list[str] | None = None) -> CertPair:
        pair = self.pair(name)
        if os.path.exists(pair.cert) and os.path.exists(pair.key):
            return pair
        return self.issue(name, cn, orgs)

    def ensure_serving(self, name: str, cn: str, sans: list[str]) -> CertPair:
        pair = self.pair(name)
        if os.path.exists(pair.cert) and os.path.exists(pair.key):
            with open(pair.cert, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            try:
                have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                current = {str(v) for v in have.get_values_for_type(x509.DNSName)} | {
                    str(v) for v in have.get_values_for_type(x509.IPAddress)
                }
            except x509.ExtensionNotFound:
                current = set()
            if set(sans) <= current and cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(
                days=30
            ):
                return pair
        return self.issue(name, cn, server_sans=sans, client=False)

    def ensure(self, advertise_ips: list[str] | None = None, first_service_ip: str = "10.96.0.1") -> PKI:
        """Create whatever is missing: CA, API serving cert, client identities, SA key."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self._ensure_ca()
        sans = apiserver_sans(advertise_ips or [], first_service_ip)
        self.ensure_serving("apiserver", "kube-apiserver", sans)
        for name, (cn, orgs) in CLIENT_IDENTITIES.items():
            self.ensure_client(name, cn, orgs)
        if not os.path.exists(self.sa_key):
            key = _new_key()
            _write_private(self.sa_key, _key_pem(key))
            _write_public(
                self.sa_pub,
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            )
        return self

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        client: bool = True,
        server: bool = False,
        days: int = LEAF_DAYS,
    ) -> bytes:
        """A certificate for a CertificateSigningRequest's subject and key, signed by the CA (PEM)."""
        ca_cert, ca_key = self._load_ca()
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage(usages or [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            try:
                sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                builder = builder.add_extension(sans, critical=False)
            except x509.ExtensionNotFound:
                pass
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def ensure_kubelet_serving(self, node: str, addresses: list[str]) -> CertPair:
        """A kubelet's serving certificate (CN=system:node:<node>, O=system:nodes; SANs: the node
        name and its addresses), as the kubernetes.io/kubelet-serving signer issues."""
        name = f"kubelet-{node}-serving"
        sans = list(dict.fromkeys([node, *addresses]))
        pair = self.pair(name)
        if os.path.exists(pair.cert) and os.path.exists(pair.key):
            with open(pair.cert, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            try:
                have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                current = {str(v) for v in have.get_values_for_type(x509.DNSName)} | {
                    str(v) for v in have.get_values_for_type(x509.IPAddress)
                }
                if set(sans) <= current:
                    return pair
            except x509.ExtensionNotFound:
                pass
        return self.issue(name, f"system:node:{node}", ["system:nodes"], server_sans=sans, client=False)

    def ensure_kubelet(self, node: str) -> CertPair:
        """The client identity of one node's kubelet: system:node:<node> in system:nodes."""
        return self.ensure_client(f"kubelet-{node}", f"system:node:{node}", ["system:nodes"])


def apiserver_sans(advertise_ips: list[str], first_service_ip: str) -> list[str]:
    names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", first_service_ip, *advertise_ips]
    return list(dict.fromkeys(names + ips))


def _sans(values: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for v in values:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(v)))
        except ValueError:
            out.append(x509.DNSName(v))
    return out


def identity_of(cert: x509.Certificate) -> tuple[str, list[str]]:
    """(user, groups) of a client certificate, as upstream's x509 authenticator: CN and O."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else "", [str(o.value) for o in orgs])
