"""The torture suite's S3 request log parses HTTP/1.1 as boto3 and the servers speak it."""

from __future__ import annotations

from tests.servers.s3log import S3RequestLog


def test_requests_are_matched_with_their_answers_across_odd_framing() -> None:
    log = S3RequestLog()
    conn = log.connection()
    put = (
        b"PUT /bk/a%20b.pdf HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\n\r\n"
    )
    conn.client_bytes(put[:20])
    conn.client_bytes(put[20:])
    conn.server_bytes(b"HTTP/1.1 100 Continue\r\n\r\n")
    conn.client_bytes(b"hello")
    conn.server_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    conn.client_bytes(b"HEAD /bk/a%20b.pdf HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.server_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")  # no body after HEAD
    conn.client_bytes(b"POST /bk/m.bin?uploadId=u1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    conn.server_bytes(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n<ok>\r\n0\r\n\r\n"
    )
    conn.client_bytes(
        b"PUT /bk/m.bin?partNumber=2&uploadId=u1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy"
    )
    conn.closed()  # killed before the answer
    ops = [(c.operation, c.key, c.status) for c in log.calls]
    assert ops == [
        ("PutObject", "a b.pdf", 200),
        ("HEAD", "a b.pdf", 200),
        ("CompleteMultipartUpload", "m.bin", 200),
        ("UploadPart", "m.bin", None),
    ]
    assert log.stored() == {"a b.pdf": 1, "m.bin": 1}
    assert log.unparsed == 0


def test_bytes_that_are_not_http_are_counted_not_guessed() -> None:
    log = S3RequestLog()
    conn = log.connection()
    conn.client_bytes(b"PUT /bk/k HTTP/1.1\r\n\r\n")
    conn.server_bytes(b"garbage\r\n\r\n")
    assert log.unparsed == 1
    assert log.calls == []
