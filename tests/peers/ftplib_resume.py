"""ABOR, resumed uploads (REST + STOR, APPE) and STOU against sockit's FTP
server, with Python's ftplib as a real client drives them.
Usage: python3 ftplib_resume.py HOST PORT USER PASSWORD
Prints one JSON object describing what happened."""
import ftplib
import hashlib
import io
import json
import random
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=30)
ftp.login(user, password)
ftp.voidcmd("TYPE I")
rng = random.Random(7)


def fetch(name):
    got = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", got.write)
    return got.getvalue()


def digest(data):
    return hashlib.sha256(data).hexdigest()


def send_part_then_abort(command, data, upto):
    """Starts an upload, sends `upto` bytes, then aborts it as ftplib does
    (ABOR sent as urgent data). Returns the two replies."""
    conn = ftp.transfercmd(command)
    conn.sendall(data[:upto])
    first = ftp.abort()
    conn.close()
    second = ftp.getresp() if first.startswith("426") else ""
    return first, second


# No transfer running: 225, and the session goes on.
out["abor_idle"] = ftp.abort()[:3]

# ABOR during a download: 426 for the transfer, then 226 for the ABOR.
big = rng.randbytes(64 << 20)
ftp.storbinary("STOR big.bin", io.BytesIO(big))
conn = ftp.transfercmd("RETR big.bin")
conn.recv(65536)
first = ftp.abort()
conn.close()
out["abor_retr"] = [first[:3], ftp.getresp()[:3]]
out["noop_after_abor"] = ftp.voidcmd("NOOP")[:3]

# ABOR during an upload that replaces a file: the old content stays, the
# bytes that arrived are kept, SIZE tells how many, REST + STOR finishes it.
old = b"the old content\n" * 1000
ftp.storbinary("STOR doc.bin", io.BytesIO(old))
new = rng.randbytes(8 << 20)
first, second = send_part_then_abort("STOR doc.bin", new, 3 << 20)
out["abor_stor"] = [first[:3], second[:3]]
out["old_kept"] = fetch("doc.bin") == old
kept = ftp.size("doc.bin")
out["kept_in_range"] = 0 <= kept <= 3 << 20  # 0 when ABOR beat every byte
out["listed_once"] = [n for n in ftp.nlst() if "doc" in n]
try:
    ftp.sendcmd(f"REST {kept + 1}")
    ftp.storbinary("STOR doc.bin", io.BytesIO(b"x"))
    out["rest_beyond"] = "accepted"
except ftplib.error_perm as err:
    out["rest_beyond"] = str(err)[:3]
ftp.storbinary("STOR doc.bin", io.BytesIO(new[kept:]), rest=kept)
out["rest_stor_identical"] = digest(fetch("doc.bin")) == digest(new)
out["size_after"] = ftp.size("doc.bin")

# APPE continues an interrupted upload of a new file, as curl -C - does.
log = rng.randbytes(5 << 20)
send_part_then_abort("STOR log.bin", log, 2 << 20)
try:
    fetch("log.bin")
    out["new_file_absent"] = "RETR worked"
except ftplib.error_perm as err:
    out["new_file_absent"] = str(err)[:3]
kept = ftp.size("log.bin")
ftp.storbinary("APPE log.bin", io.BytesIO(log[kept:]))
out["appe_identical"] = digest(fetch("log.bin")) == digest(log)
# APPE onto a complete file appends.
ftp.storbinary("APPE log.bin", io.BytesIO(b"tail"))
out["appe_appends"] = fetch("log.bin") == log + b"tail"

# STOU never overwrites: a taken name gets a suffix, named in the replies.
out["stou_reply"] = ftp.storbinary("STOU doc.bin", io.BytesIO(b"unique"))
out["stou_names"] = sorted(n for n in ftp.nlst() if n.startswith("doc"))
out["stou_content"] = fetch("doc.bin.1") == b"unique"

# DELE removes a kept partial upload too; then nothing of it is left.
send_part_then_abort("STOR gone.bin", rng.randbytes(1 << 20), 512 << 10)
out["dele_partial"] = ftp.delete("gone.bin")[:3]
try:
    ftp.size("gone.bin")
    out["gone"] = False
except ftplib.error_perm:
    out["gone"] = True
out["quit"] = ftp.quit()[:3]
print(json.dumps(out))
