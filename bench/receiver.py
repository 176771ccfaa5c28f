"""Webhook receiver for bench/run: records when each webhook arrived and which row it carries.

A minimal HTTP/1.1 server on asyncio with keep-alive. Every request to a path outside
/_bench/ is recorded as (receipt time, row id) and gets an empty 200 response. The
receipt time is time.time() (CLOCK_REALTIME) taken when the whole body has been read,
so it compares with commit times taken by bench/bench.py on the same machine. The row
id is the "id" field of the JSON body. A body without an integer "id" is recorded
with id None.

Control requests from bench/bench.py:
  GET  /_bench/count    {"requests": N, "distinct_ids": N}
  GET  /_bench/records  {"records": [[receipt_time, id], ...]} in arrival order
  POST /_bench/reset    deletes every record

Requests with a chunked body are rejected (501), because libcurl sends webhook
bodies with Content-Length and the parser does not implement chunked decoding.
"""

import argparse
import asyncio
import json
import signal
import sys
import time

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024
READ_BUFFER_BYTES = 64 * 1024


class Recorder:
    """Receipt times and row ids of every webhook since the last reset."""

    def __init__(self):
        self.records = []
        self.distinct_ids = set()

    def add(self, receipt_time, body):
        row_id = None
        try:
            document = json.loads(body)
            if isinstance(document, dict) and isinstance(document.get("id"), int):
                row_id = document["id"]
        except ValueError:
            pass
        self.records.append((receipt_time, row_id))
        if row_id is not None:
            self.distinct_ids.add(row_id)

    def reset(self):
        self.records = []
        self.distinct_ids = set()


class WebhookProtocol(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection; parses pipelined or split requests from a byte buffer.

    Reads go into one buffer per connection. With asyncio.Protocol, each read allocated
    a bytes object of 256 KiB (asyncio's read size in Python 3.11). On connections that
    stay open, glibc served each with mmap, mremap and munmap, and under pgbench with
    the service the receiver used about 1.6 times the CPU per request.
    """

    def __init__(self, recorder):
        self.recorder = recorder
        self.transport = None
        self.buffer = bytearray()
        self.read_buffer = memoryview(bytearray(READ_BUFFER_BYTES))

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.read_buffer

    def buffer_updated(self, nbytes):
        self.buffer += self.read_buffer[:nbytes]
        while self.transport is not None:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self.reject(b"431 Request Header Fields Too Large")
                return
            head = bytes(self.buffer[:head_end]).decode("latin-1")
            lines = head.split("\r\n")
            request_line = lines[0].split(" ")
            if len(request_line) != 3:
                self.reject(b"400 Bad Request")
                return
            method, path, _version = request_line

            content_length = 0
            close_after = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    try:
                        content_length = int(value.strip())
                    except ValueError:
                        self.reject(b"400 Bad Request")
                        return
                elif name == "transfer-encoding":
                    self.reject(b"501 Not Implemented")
                    return
                elif name == "connection" and value.strip().lower() == "close":
                    close_after = True

            request_end = head_end + 4 + content_length
            if len(self.buffer) < request_end:
                return
            body = bytes(self.buffer[head_end + 4:request_end])
            del self.buffer[:request_end]

            if path.startswith("/_bench/"):
                self.transport.write(self.control(method, path))
            else:
                self.recorder.add(time.time(), body)
                self.transport.write(OK_EMPTY)
            if close_after:
                self.transport.close()
                self.transport = None

    def connection_lost(self, exc):
        self.transport = None

    def reject(self, status):
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        self.transport.close()
        self.transport = None

    def control(self, method, path):
        if method == "GET" and path == "/_bench/count":
            document = {"requests": len(self.recorder.records), "distinct_ids": len(self.recorder.distinct_ids)}
        elif method == "GET" and path == "/_bench/records":
            document = {"records": self.recorder.records}
        elif method == "POST" and path == "/_bench/reset":
            self.recorder.reset()
            document = {}
        else:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        body = json.dumps(document).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


async def serve(host, port):
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    server = await loop.create_server(lambda: WebhookProtocol(recorder), host, port, backlog=1024)
    stopped = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stopped.set)
    print(f"receiver listening on http://{host}:{port}", file=sys.stderr, flush=True)
    await stopped.wait()
    server.close()
    await server.wait_closed()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to bind")
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.host, arguments.port))


if __name__ == "__main__":
    main()
