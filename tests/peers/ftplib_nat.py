"""Python's ftplib through a NAT in front of sockit's FTP server: the client
knows only the public address; the server sits on a private one.
Usage: python3 ftplib_nat.py HOST PORT USER PASSWORD
Prints one JSON object describing what happened."""
import ftplib
import hashlib
import io
import json
import os
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
ftp = ftplib.FTP()
# Modern ftplib ignores the address in a 227 reply and reuses the control
# connection's; trusting it is what makes the server's announcement matter.
ftp.trust_server_pasv_ipv4_address = True
ftp.connect(host, port, timeout=30)
ftp.login(user, password)
out["pasv"] = [ftp.sendcmd("PASV") for _ in range(3)]
# The listeners those PASVs opened are dropped by the next one; the transfers
# below each open their own.

payload = os.urandom(300_000)
digest = hashlib.sha256(payload).hexdigest()


def round_trip(name):
    ftp.storbinary(f"STOR {name}", io.BytesIO(payload))
    back = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", back.write)
    return hashlib.sha256(back.getvalue()).hexdigest() == digest


out["passive_identical"] = round_trip("passive.bin")
ftp.set_pasv(False)
out["active_identical"] = round_trip("active.bin")
ftp.quit()
print(json.dumps(out))
