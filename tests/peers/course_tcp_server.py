"""The course's iterative TCP server: one client at a time, recv(1024), reply
with data.upper(). Binds 127.0.0.1 on the given port (0: any free port) and
prints the port it got, so a test knows when it is ready."""
import socket
import sys

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(5)
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    while True:
        data = conn.recv(1024)
        if not data:
            break
        conn.send(data.upper())
    conn.close()
