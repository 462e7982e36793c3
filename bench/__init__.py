"""ingestd's benchmark suite: ingestd beside rclone, aws s3 cp, s5cmd and bare boto3.

Run from the repository root with the development venv: ``.venv/bin/python -m bench``
(``--quick`` for the seconds-long smoke version the test suite runs). See ``bench/RESULTS.md``.
"""
