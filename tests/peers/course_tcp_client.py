"""The course's TCP client, kept as the course writes it: one line sent with
send(), one recv(1024) printed; 'q' quits, empty lines are skipped.
Usage: python3 course_tcp_client.py HOST PORT  (lines on stdin)."""
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
client = socket.socket(family, socket.SOCK_STREAM)
client.connect((host, port))
for line in sys.stdin:
    msg = line.strip()
    if not msg:
        continue
    if msg == "q":
        break
    client.send(msg.encode("utf-8"))
    reply = client.recv(1024)
    print(reply.decode("utf-8"), flush=True)
client.close()
