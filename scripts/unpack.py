"""Unpack a .tar.zst read from standard input into the folder given, without the zstd command:
Ollama ships its Linux releases as .tar.zst only (its .tgz stopped at 0.14), and ubuntu 26.04's
runner image has no zstd. Runs in ci-eval's private environment (the `ollama` extra)."""

import sys
import tarfile

import zstandard

with (zstandard.ZstdDecompressor().stream_reader(sys.stdin.buffer) as stream,
      tarfile.open(fileobj=stream, mode="r|") as archive):
    archive.extractall(sys.argv[1], filter="data")  # nothing outside the folder, no devices
