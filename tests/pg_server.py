"""A throwaway PostgreSQL server on 127.0.0.1 for the storage tests and ``.ci/run``.

The server lives in a temporary directory (data, log, socket, password); as root it runs as the ``postgres``
user, since PostgreSQL refuses to run as root. A watchdog stops it when the process that asked for it dies, so a
killed test run leaves no server behind.

    python tests/pg_server.py available            # exit 0 when initdb and pg_ctl are found
    python tests/pg_server.py start DIR [--owner PID]  # prints the SQLAlchemy URL
    python tests/pg_server.py stop DIR [--remove]
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["find_bin", "start", "stop", "URL_ENV"]

URL_ENV = "PRUNEPILOT_TEST_PG_URL"
"""Environment variable holding the URL of a running test server (set by ``.ci/run``)."""
_BIN_ENV = "PRUNEPILOT_PG_BIN"
_MARKER = "prunepilot-pg-server"


def find_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$PRUNEPILOT_PG_BIN``, ``PATH``, or the newest
    ``/usr/lib/postgresql/*/bin``; None when there is none."""
    candidates = [os.environ.get(_BIN_ENV, "")]
    on_path = shutil.which("pg_ctl")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0, reverse=True)
    candidates += [str(p) for p in versions]
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], base: Path) -> None:
    r = subprocess.run(_as_server_user(cmd), cwd=base, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        log = base / "server.log"
        tail = log.read_text()[-1500:] if log.exists() else ""
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr[-1500:]} {tail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(base: Path, *, owner_pid: int | None = None) -> str:
    """Initialise and start a server in ``base`` (created if needed); return its ``postgresql+psycopg`` URL.

    Args:
        base: An empty directory the server may own (it is chowned to ``postgres`` when running as root).
        owner_pid: Stop the server (and remove ``base``) once this process has exited.

    Raises:
        RuntimeError: No server binaries, or the server did not start.
    """
    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    base.mkdir(parents=True, exist_ok=True)
    (base / _MARKER).write_text("")
    password = secrets.token_hex(16)
    (base / "pwfile").write_text(password + "\n")
    os.chmod(base / "pwfile", 0o600)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (base, base / _MARKER, base / "pwfile"):
            os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(base, 0o700)
    data = base / "data"
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={base / 'pwfile'}",
          "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"], base)
    for attempt in range(3):  # the free port may be taken between probing and binding
        port = _free_port()
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=off "
                "-c max_connections=50")
        try:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
                  "-o", opts, "start"], base)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    url = f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/postgres"
    if owner_pid is not None:
        stop_cmd = f"{sys.executable} {Path(__file__).resolve()} stop {base} --remove"
        subprocess.Popen(["sh", "-c", f"while kill -0 {owner_pid} 2>/dev/null; do sleep 2; done; {stop_cmd}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    return url


def stop(base: Path, *, remove: bool = False) -> None:
    """Stop the server in ``base`` (fast shutdown; nothing to do when it is not running), then maybe remove it."""
    bin_dir = find_bin()
    data = base / "data"
    if bin_dir is not None and (data / "postmaster.pid").exists():
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       cwd="/", capture_output=True, timeout=120)
    if remove and (base / _MARKER).exists():
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("available")
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("--owner", type=int, default=None)
    t = sub.add_parser("stop")
    t.add_argument("dir")
    t.add_argument("--remove", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "available":
        return 0 if find_bin() is not None else 1
    if args.cmd == "start":
        print(start(Path(args.dir), owner_pid=args.owner))
        return 0
    stop(Path(args.dir), remove=args.remove)
    return 0


if __name__ == "__main__":
    sys.exit(main())
