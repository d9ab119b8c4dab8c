"""The course's UDP server: recvfrom(1024), sendto(data.upper()). Binds
127.0.0.1 on the given port (0: any free port) and prints the port it got."""
import socket
import sys

server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", int(sys.argv[1])))
print(server.getsockname()[1], flush=True)
while True:
    data, peer = server.recvfrom(1024)
    server.sendto(data.upper(), peer)
