"""Explicit FTPS (AUTH TLS, PBSZ, PROT P) with Python's ftplib.FTP_TLS
against sockit's FTP server, which requires TLS.
Usage: python3 ftplib_tls.py HOST PORT USER PASSWORD
Prints one JSON object describing what happened."""
import ftplib
import io
import json
import ssl
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # a self-signed test certificate

plain = ftplib.FTP()
plain.connect(host, port, timeout=30)
out["feat"] = plain.sendcmd("FEAT").splitlines()
try:
    plain.login(user, password)
    out["plain_login"] = "accepted"
except ftplib.error_perm as err:
    out["plain_login"] = str(err)[:3]
plain.close()

ftp = ftplib.FTP_TLS(context=context)
ftp.connect(host, port, timeout=30)
out["auth"] = ftp.auth()[:3]
out["login"] = ftp.login(user, password)[:3]
out["tls_version"] = ftp.sock.version()
try:
    ftp.nlst()
    out["clear_data"] = "accepted"
except ftplib.error_perm as err:
    out["clear_data"] = str(err)[:3]
try:
    out["prot_c"] = ftp.prot_c()[:3]
except ftplib.error_perm as err:
    out["prot_c"] = str(err)[:3]
out["prot_p"] = ftp.prot_p()[:3]
payload = bytes(range(256)) * 8192
out["stor"] = ftp.storbinary("STOR tls.bin", io.BytesIO(payload))[:3]
got = io.BytesIO()
ftp.retrbinary("RETR tls.bin", got.write)
out["identical"] = got.getvalue() == payload
out["nlst"] = ftp.nlst()
# ABOR over TLS (FTP_TLS sends it in line, not as urgent data).
big = bytes(64 << 20)
ftp.storbinary("STOR big.bin", io.BytesIO(big))
conn = ftp.transfercmd("RETR big.bin")
conn.recv(65536)
first = ftp.abort()
conn.close()
out["abor"] = [first[:3], ftp.getresp()[:3]]
out["noop"] = ftp.voidcmd("NOOP")[:3]
out["quit"] = ftp.quit()[:3]
print(json.dumps(out))
