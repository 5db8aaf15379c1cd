"""http/protocol.py: the writes of one event-loop step reach the socket as one
writelines, in order; close sends what is buffered first; abort drops it."""

from __future__ import annotations

import asyncio

from safehold.http.protocol import CoalescingTransport


class Recorder(asyncio.Transport):
    """The socket end: what the wrapped transport was asked to do, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[bytes]]] = []
        self.closing = False

    def writelines(self, list_of_data: object) -> None:
        self.calls.append(("writelines", [bytes(d) for d in list_of_data]))  # type: ignore[attr-defined]

    def write(self, data: object) -> None:
        self.calls.append(("write", [bytes(data)]))  # type: ignore[call-overload]

    def close(self) -> None:
        self.calls.append(("close", []))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", []))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


async def _step() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_head_and_body_of_one_step_go_out_together() -> None:
    async def main() -> list[tuple[str, list[bytes]]]:
        sock = Recorder()
        t = CoalescingTransport(sock, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"hi")
        assert sock.calls == []  # nothing before the step ends
        await _step()
        t.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await _step()
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
        return sock.calls

    calls = asyncio.run(main())
    assert calls == [("writelines", [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"hi"]),
                     ("writelines", [b"HTTP/1.1 204 No Content\r\n\r\n"])]


def test_close_sends_the_buffer_first_and_abort_drops_it() -> None:
    async def main() -> tuple[list[tuple[str, list[bytes]]], list[tuple[str, list[bytes]]]]:
        loop = asyncio.get_running_loop()
        closed, aborted = Recorder(), Recorder()
        t = CoalescingTransport(closed, loop)
        t.write(b"last answer")
        t.close()
        u = CoalescingTransport(aborted, loop)
        u.write(b"never sent")
        u.abort()
        await _step()  # the flushes scheduled by the writes find nothing left to send
        return closed.calls, aborted.calls

    closed, aborted = asyncio.run(main())
    assert closed == [("writelines", [b"last answer"]), ("close", [])]
    assert aborted == [("abort", [])]


def test_nothing_is_written_to_a_closing_transport() -> None:
    async def main() -> list[tuple[str, list[bytes]]]:
        sock = Recorder()
        t = CoalescingTransport(sock, asyncio.get_running_loop())
        t.write(b"late")
        sock.closing = True  # the peer went away before the step ended
        await _step()
        return sock.calls

    assert asyncio.run(main()) == []
