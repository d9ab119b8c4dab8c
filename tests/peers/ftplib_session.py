"""Drives sockit's FTP server with Python's ftplib, as a real client would.
Usage: python3 ftplib_session.py HOST PORT USER PASSWORD
Prints one JSON object describing what happened."""
import ftplib
import io
import json
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
ftp = ftplib.FTP()
out["welcome"] = ftp.connect(host, port, timeout=30)
out["login"] = ftp.login(user, password)
out["syst"] = ftp.sendcmd("SYST")
out["feat"] = ftp.sendcmd("FEAT")
out["utf8"] = ftp.sendcmd("OPTS UTF8 ON")
ftp.encoding = "utf-8"
out["mkd"] = ftp.mkd("docs")
out["cwd"] = ftp.cwd("docs")
out["pwd"] = ftp.pwd()
payload = bytes(range(256)) * 4096
out["stor"] = ftp.storbinary("STOR 报告.bin", io.BytesIO(payload))
out["size"] = ftp.size("报告.bin")
out["mdtm"] = ftp.sendcmd("MDTM 报告.bin")
partial = io.BytesIO()
out["rest"] = ftp.retrbinary("RETR 报告.bin", partial.write, rest=1000)
out["rest_identical"] = partial.getvalue() == payload[1000:]
got = io.BytesIO()
out["retr"] = ftp.retrbinary("RETR 报告.bin", got.write)
out["identical"] = got.getvalue() == payload
out["nlst"] = ftp.nlst()
out["mlsd"] = {name: facts for name, facts in ftp.mlsd()}
out["help"] = ftp.sendcmd("HELP")[:3]
out["stat"] = ftp.sendcmd("STAT")[:3]
out["mode_s"] = ftp.sendcmd("MODE S")[:3]
try:
    out["mode_b"] = ftp.sendcmd("MODE B")[:3]
except ftplib.error_perm as err:
    out["mode_b"] = str(err)[:3]
out["stru_f"] = ftp.sendcmd("STRU F")[:3]
out["allo"] = ftp.sendcmd("ALLO 100")[:3]
lines = []
ftp.retrlines("LIST", lines.append)
out["list"] = lines
text = []
ftp.storlines("STOR notes.txt", io.BytesIO(b"one\ntwo\n"))
ftp.retrlines("RETR notes.txt", text.append)
out["ascii_lines"] = text
ftp.set_pasv(False)
active = io.BytesIO()
ftp.retrbinary("RETR 报告.bin", active.write)
out["active_identical"] = active.getvalue() == payload
out["active_nlst"] = ftp.nlst()
ftp.set_pasv(True)
try:
    out["bounce"] = ftp.sendcmd("PORT 10,0,0,1,4,1")
except ftplib.error_perm as err:
    out["bounce"] = str(err)[:3]
try:
    out["low_port"] = ftp.sendcmd("PORT 127,0,0,1,0,21")
except ftplib.error_perm as err:
    out["low_port"] = str(err)[:3]
ftp.cwd("..")
for attempt in ["../../etc/passwd", "/etc/passwd", "../x"]:
    try:
        ftp.retrbinary("RETR " + attempt, lambda b: None)
        out.setdefault("escaped", []).append(attempt)
    except ftplib.error_perm as err:
        out.setdefault("refused", []).append(str(err)[:3])
try:
    ftp.cwd("..")
    out["cwd_above_root"] = ftp.pwd()
except ftplib.error_perm as err:
    out["cwd_above_root"] = str(err)[:3]
# An overlong line, sent raw (ftplib itself refuses to send one).
ftp.sock.sendall(b"NOOP " + b"x" * 5000 + b"\r\n")
out["long_line"] = ftp.getline()
out["after_long_line"] = ftp.sendcmd("PWD")
out["dele"] = ftp.delete("docs/notes.txt")
out["quit"] = ftp.quit()
print(json.dumps(out))
