"""TLS session resumption on FTPS data connections, with Python's ftplib:
as shipped (its data connections start new TLS sessions), and with data
connections that resume the control connection's session.
Usage: python3 ftplib_tls_resume.py HOST PORT USER PASSWORD
Prints one JSON object: what NLST gave each way."""
import ftplib
import json
import ssl
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # a self-signed test certificate


class Resuming(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def nlst(kind):
    ftp = kind(context=context)
    ftp.connect(host, port, timeout=30)
    ftp.auth()
    ftp.login(user, password)
    ftp.prot_p()
    try:
        names = ftp.nlst()
        result = {"names": names}
    except ftplib.all_errors as err:
        result = {"error": str(err)[:3]}
    ftp.close()
    return result


print(json.dumps({"fresh": nlst(ftplib.FTP_TLS), "resumed": nlst(Resuming)}))
