"""Make every secret file docker-compose.yml mounts, in one folder kept out of git and out of the
image (``deploy/secrets/``: .gitignore, .dockerignore).

    python3 deploy/make_secrets.py [--out deploy/secrets] [--hostname NAME ...] [--board-user NAME]

On a fresh clone the first run creates ``.venv/`` with the project (``run.py``) and runs itself
there (it needs ``cryptography``, ``bcrypt`` and the product's own code). What it makes
(``OUT/``; every secret mode 0600, every folder 0700):

| file | what | mounted in |
|---|---|---|
| ``nats/tls/ca.pem``, ``server-cert.pem``, ``server-key.pem`` | the NATS servers' CA and certificate (names nats1..3, localhost, 127.0.0.1, ``--hostname``) | nats1..3 at /etc/nats/tls; ``ca.pem`` in every service (``NATS_TLS_CA``) |
| ``nats/cluster-node{1,2,3}.conf`` | ``deploy/nats/cluster-node*.conf`` with the bcrypt hashes of the passwords below | nats1..3 at /etc/nats/nats.conf |
| ``credentials/<user>.creds`` | one NATS user's password (``INFUSION_MONITOR_NATS_CREDENTIALS``) | each service its own |
| ``credentials/board-users.toml`` | the board's users file with one user, ``--board-user`` (default ``admin``) | board |
| ``board-<user>.password`` | that user's password, for the first sign-in | nothing (read it once, then delete it) |
| ``tls/ca.pem``, ``listener-cert.pem``, ``listener-key.pem`` | the product's listeners (board and pager over HTTPS, gateway MLLP over TLS and FHIR over HTTPS; localhost, 127.0.0.1, ``--hostname``); ``ca.pem`` also signs the MLLP senders' client certificates | board, pager, gateway at /etc/infusion-monitor/tls |
| ``gateway.env`` | ``INFUSION_MONITOR_PATIENT_KEY_SECRET``, the site secret the pseudonymous patient keys derive from | gateway (``env_file``) |
| ``ca/nats-ca-key.pem``, ``ca/listener-ca-key.pem`` | the two CAs' keys (sign more certificates; keep offline) | nothing |

Run it again at any time: what exists is kept (passwords, keys, certificates, the site secret:
changing that one would change every patient's key), what is missing is made, and the cluster
configs are written again from ``deploy/nats/`` (a changed permission table flows in). To
rotate something, delete its file and run it again. A real PKI replaces the two CAs: put its
files in ``tls/`` and ``nats/tls/`` under the same names.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "secrets"
NODES = ("cluster-node1.conf", "cluster-node2.conf", "cluster-node3.conf")
NATS_NAMES = ("nats1", "nats2", "nats3", "localhost", "127.0.0.1")
LISTENER_NAMES = ("localhost", "127.0.0.1")
CERT_DAYS = 825  # the longest validity browsers accept for a server certificate


def _in_project_env() -> None:
    """Run inside the project's environment: re-executed with ``.venv/bin/python`` (made by
    ``run.py`` when missing) when this Python lacks the packages."""
    try:
        import bcrypt  # noqa: F401
        import cryptography  # noqa: F401

        import infusion_monitor  # noqa: F401
        return
    except ImportError:
        if os.environ.get("IM_MAKE_SECRETS_REEXEC"):
            sys.exit("make_secrets: the project's .venv lacks bcrypt or cryptography: run python3 run.py --help")
    sys.path.insert(0, str(ROOT))
    import run

    run.ensure_venv()
    os.environ["IM_MAKE_SECRETS_REEXEC"] = "1"
    python = str(run.BIN / "python")
    os.execv(python, [python, __file__, *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 deploy/make_secrets.py",
                                     description="Make the TLS material, NATS passwords and board user that "
                                                 "docker-compose.yml mounts (kept when present).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where (default: deploy/secrets)")
    parser.add_argument("--hostname", action="append", default=[],
                        help="another name or address clients use for this host, in the certificates "
                             "(repeatable; default: only localhost and 127.0.0.1, and nats1..3 for NATS)")
    parser.add_argument("--board-user", default="admin", help="the board's first user (default: admin)")
    args = parser.parse_args(argv)
    _in_project_env()
    made = make_secrets(args.out, hostnames=args.hostname, board_user=args.board_user)
    out = args.out
    for path in made:
        print(f"made {path.relative_to(out)}")
    print(f"make_secrets: everything docker-compose.yml mounts is in {out} "
          f"({len(made)} file(s) made, the rest kept).")
    password = out / f"board-{args.board_user}.password"
    if password.exists():
        print(f"The board's first user is {args.board_user}; the password is in {password} (read it, sign in at "
              "https://localhost:8090, then delete the file).")
    print(f"Keep {out / 'gateway.env'} backed up: the patient keys derive from its secret.")
    return 0


def make_secrets(out: Path, hostnames: Iterable[str] = (), board_user: str = "admin") -> list[Path]:
    """Make what is missing under ``out``; the files made, in order."""
    from infusion_monitor.runtime.private import write_private

    out = Path(out)
    _private_dir(out)
    made: list[Path] = []
    hostnames = list(hostnames)
    made += _pki(out / "nats" / "tls", out / "ca" / "nats-ca-key.pem", "infusion-monitor NATS CA",
                 "server", [*NATS_NAMES, *hostnames])
    made += _pki(out / "tls", out / "ca" / "listener-ca-key.pem", "infusion-monitor listeners CA",
                 "listener", [*LISTENER_NAMES, *hostnames])
    made += _nats_passwords(out)
    users = out / "credentials" / "board-users.toml"
    if not users.exists():
        from infusion_monitor.board.auth import USERNAME, hash_password

        if not USERNAME.fullmatch(board_user):
            raise SystemExit(f"make_secrets: {board_user!r} is not a board user name (A-Z a-z 0-9 _ . @ -)")
        password = secrets.token_urlsafe(18)
        made.append(write_private(out / f"board-{board_user}.password", password + "\n"))
        made.append(write_private(users, f'# the board\'s users (docs/board.md); scrypt hashes\n'
                                         f'[users."{board_user}"]\nname = "{board_user}"\n'
                                         f'password = "{hash_password(password)}"\n'))
    site = out / "gateway.env"
    if not site.exists():
        made.append(write_private(site, "# the site secret of the pseudonymous patient keys: never change it\n"
                                        f"INFUSION_MONITOR_PATIENT_KEY_SECRET={secrets.token_urlsafe(32)}\n"))
    return made


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _nats_passwords(out: Path) -> list[Path]:
    """A credentials file per user of the cluster configs (kept when present), and the configs
    written again with the bcrypt hash of each password."""
    sys.path.insert(0, str(HERE / "nats"))
    from set_passwords import bcrypt_hash, password_users, set_hash

    from infusion_monitor.runtime.access import Credentials
    from infusion_monitor.runtime.private import write_private

    texts = {name: (HERE / "nats" / name).read_text() for name in NODES}
    made = []
    for user in password_users(texts.values()):
        path = _private_dir(out / "credentials") / f"{user.lower()}.creds"
        if path.exists():
            password = Credentials.read(path).password
        else:
            password = secrets.token_urlsafe(32)
            made.append(Credentials(user.lower(), password).write(path))
        hashed = bcrypt_hash(password)
        texts = {name: set_hash(text, user, hashed) for name, text in texts.items()}
    for name, text in texts.items():
        write_private(_private_dir(out / "nats") / name, text)  # rewritten every run: not reported as made
    return made


def _pki(folder: Path, ca_key_path: Path, ca_name: str, leaf: str, names: list[str]) -> list[Path]:
    """``folder/ca.pem`` (its key at ``ca_key_path``) and ``folder/<leaf>-cert.pem`` /
    ``<leaf>-key.pem`` for ``names``; a new CA re-issues the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    _private_dir(folder)
    _private_dir(ca_key_path.parent)
    ca_path, cert_path, key_path = folder / "ca.pem", folder / f"{leaf}-cert.pem", folder / f"{leaf}-key.pem"
    made = []
    if ca_path.exists() and ca_key_path.exists():
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    else:
        if ca_path.exists():
            raise SystemExit(f"make_secrets: {ca_path} exists without its key {ca_key_path}: "
                             "put the key there, or move both away to make a new CA")
        ca_key = _new_key()
        ca = _certificate(ca_name, ca_key, ca_key, None, ca=True)
        made += [_write_key(ca_key_path, ca_key), _write_cert(ca_path, ca)]
        cert_path.unlink(missing_ok=True)  # signed by the CA that is gone
    if not (cert_path.exists() and key_path.exists()):
        key = _new_key()
        made += [_write_key(key_path, key), _write_cert(cert_path, _certificate(names[0], key, ca_key, ca, names=names))]
    return made


def _new_key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _certificate(common_name: str, key, signer, issuer, *, ca: bool = False, names: Iterable[str] = ()):  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=CERT_DAYS * (4 if ca else 1))))
    if ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True))
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False))
    return builder.sign(signer, hashes.SHA256())


def _general_name(name: str):  # type: ignore[no-untyped-def]
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_key(path: Path, key) -> Path:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    from infusion_monitor.runtime.private import write_private

    return write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()).decode())


def _write_cert(path: Path, cert) -> Path:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    from infusion_monitor.runtime.private import write_private

    return write_private(path, cert.public_bytes(serialization.Encoding.PEM).decode())


if __name__ == "__main__":
    raise SystemExit(main())
