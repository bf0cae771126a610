"""A capture folder holding one entry of every kind DVC cannot hash (and a few it can)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path


def hostile_entries(datasets: Path, outside: Path) -> dict[str, str]:
    """One entry per hazard kind in a session folder -> {path under datasets/: kind}."""
    s = datasets / "vehicle" / "s1"
    s.mkdir(parents=True)
    (s / "ok.png").write_bytes(b"\x89PNG not really")
    (outside / "secret.png").write_bytes(b"outside")
    os.symlink(outside / "nowhere.png", s / "broken.png")
    os.symlink(outside / "secret.png", s / "escape.png")
    os.symlink("loop.png", s / "loop.png")
    os.symlink("ok.png", s / "inside_link.png")  # fine: DVC and ingest read the target
    os.mkfifo(s / "pipe.jpg")
    os.symlink("pipe.jpg", s / "link_to_pipe.jpg")
    with open(os.fsencode(s) + b"/bad\xff.png", "wb") as fh:
        fh.write(b"x")
    os.mkdir(os.fsencode(s) + b"/dir\xfe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(s / "sock.jpg"))
    sock.close()
    kinds = {
        "broken.png": "broken_link",
        "escape.png": "link_outside_tree",
        "loop.png": "link_loop",
        "pipe.jpg": "fifo",
        "link_to_pipe.jpg": "fifo",
        "bad\udcff.png": "name_not_utf8",
        "dir\udcfe": "name_not_utf8",
        "sock.jpg": "socket",
    }
    if os.geteuid() == 0:  # creating a device file needs CAP_MKNOD
        os.mknod(s / "zero.jpg", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: endless
        kinds["zero.jpg"] = "device"
    return {f"vehicle/s1/{k}": v for k, v in kinds.items()}
