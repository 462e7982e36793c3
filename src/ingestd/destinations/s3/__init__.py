"""The S3 (and S3-compatible) destination, one module per concern.

destination.py  S3Destination: client settings, single PUT, key checks, verification HEAD
multipart.py    the resumable multipart job (create or resume, parts, complete, verify)
bodies.py       request bodies read block by block from the open source file
checksums.py    which checksum a request carries, and reading it back from answers
parts.py        pure part arithmetic: sizes, ranges, reconciliation, multipart ETags
object_options.py  pure: storage class, encryption (SSE-S3/KMS/C), tags as call arguments,
                and whether an answer shows the object got them
errors.py       botocore/boto3 exceptions -> ingestd's failure classes (pure)
conditional.py  conditional_writes: If-None-Match PUTs or a HEAD first (pure decision)
writeprobe.py   the start-up probe behind conditional_writes = "auto"

Importing this package loads boto3 (about 40 MB): the destination factory imports it only when
an S3 destination is configured. See docs/ARCHITECTURE.md, "S3 compatibility".
"""
