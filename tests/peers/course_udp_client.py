"""The course's UDP client: each line one datagram, the reply printed; 'q'
quits, empty lines are skipped. Usage: python3 course_udp_client.py HOST PORT."""
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
client = socket.socket(family, socket.SOCK_DGRAM)
client.settimeout(5)
for line in sys.stdin:
    msg = line.strip()
    if not msg:
        continue
    if msg == "q":
        break
    client.sendto(msg.encode("utf-8"), (host, port))
    reply, _ = client.recvfrom(1024)
    print(reply.decode("utf-8"), flush=True)
client.close()
