"""Test certificates made at run time with the `openssl` command (no key is ever committed): a CA, a
server certificate for localhost and 127.0.0.1, one for a wrong name, one from an unknown CA, an expired
one, and client certificates for mutual TLS. EC P-256 keys: fast to make and to sign.

    pki = make_pki(directory)   # {"ca": path, "server": (cert, key), "wrong_name": ..., ...}
"""
import os
import subprocess

SERVER_EXT = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n"
WRONG_EXT = "subjectAltName=DNS:wrong.example\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n"
CN_ONLY_EXT = "extendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n"  # the name only in the subject


def _run(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _ca(d, name, subject):
    _run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", subject,
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _leaf(d, name, subject, ext, ca="ca", serial=2):
    _run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject], d)
    _write(os.path.join(d, f"{name}.ext"), ext)
    _run(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
          "-set_serial", str(serial), "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem"], d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


def _expired(d):
    """A localhost certificate valid only in January 2020, signed by the test CA (`openssl ca` takes
    explicit dates; OpenSSL 3.0's `x509` has no -not_before/-not_after)."""
    _run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", "expired.key", "-out", "expired.csr", "-subj", "/CN=localhost"], d)
    _write(os.path.join(d, "index.txt"), "")
    _write(os.path.join(d, "serial"), "10\n")
    _write(os.path.join(d, "ca.cnf"), "[ca]\ndefault_ca=t\n[t]\ndatabase=index.txt\nnew_certs_dir=.\n"
           "certificate=ca.pem\nprivate_key=ca.key\nserial=serial\ndefault_md=sha256\npolicy=any\n"
           "unique_subject=no\n[any]\ncommonName=supplied\n[server]\n" + SERVER_EXT)
    _run(["ca", "-batch", "-config", "ca.cnf", "-extensions", "server", "-startdate", "20200101000000Z",
          "-enddate", "20200102000000Z", "-in", "expired.csr", "-out", "expired.pem", "-notext"], d)
    return os.path.join(d, "expired.pem"), os.path.join(d, "expired.key")


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca", "/CN=breakerbox test CA")
    _ca(d, "other_ca", "/CN=some other CA")
    return {
        "ca": os.path.join(d, "ca.pem"),
        "other_ca": os.path.join(d, "other_ca.pem"),
        "server": _leaf(d, "server", "/CN=localhost", SERVER_EXT, serial=2),
        "wrong_name": _leaf(d, "wrong", "/CN=wrong.example", WRONG_EXT, serial=3),
        "unknown_ca": _leaf(d, "untrusted", "/CN=localhost", SERVER_EXT, ca="other_ca", serial=4),
        "expired": _expired(d),
        "cn_only": _leaf(d, "cn_only", "/CN=localhost", CN_ONLY_EXT, serial=7),
        "client": _leaf(d, "client", "/CN=breakerbox client", CLIENT_EXT, serial=5),
        "client2": _leaf(d, "client2", "/CN=breakerbox client 2", CLIENT_EXT, serial=6),
    }


if __name__ == "__main__":
    import sys
    import json
    print(json.dumps(make_pki(sys.argv[1] if len(sys.argv) > 1 else "pki"), indent=1))
