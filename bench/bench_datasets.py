"""Benchmark: ``data add`` of 1 GiB against ``dvc add``, with ``b2sum`` as a hashing reference.

Workloads (random bytes from ``os.urandom``, made under ``bench/.work/datasets`` and deleted
at the end):

- a folder of 1,000 files of 1 MiB (1 GiB);
- one 1 GiB file;
- the re-add of the unchanged folder.

Each round runs every contender once, each in a fresh process, in turn (so that a noisy
neighbour on the shared machine hurts all of them alike); the figures are medians over the
rounds. Before every timed run the page cache's dirty pages are flushed (``os.sync``,
untimed), and the source data is hot in the page cache for every contender.

- Loopline SDK: a fresh process runs ``ll.init`` on a fresh home, opens the metadata
  database and imports ``ll.datasets`` (untimed: a new home migrates itself once), then
  times ``ll.datasets.register(name, path)``: the API in a running program. Unlike
  ``dvc add``, whose time includes its interpreter's start and imports, it leaves out
  Loopline's (~0.3 s of CPU: pydantic-settings, SQLAlchemy, Typer), so its rows say so;
  the like-for-like comparison with ``dvc add`` is the CLI's.
- Loopline CLI: the wall time of the whole ``loopline data add NAME PATH --json`` process
  (interpreter start-up and imports included), on a fresh home made beforehand (untimed).
- DVC: the wall time of ``dvc add PATH`` in a fresh ``git init`` + ``dvc init`` repository
  (made untimed; analytics off, its site cache under ``bench/.work``), the data moved into
  the repository by a rename before the run and back after it.
- ``b2sum``: the wall time of ``b2sum`` over the same files (one process, one core): how
  long it takes just to read and hash the bytes, nothing stored.
- The floor: a durable copy of the same bytes and nothing else (8 threads copying 8 MiB
  pieces, written past the page cache as Loopline writes, fsync per file and of the folder
  (a folder of many files: one ``syncfs`` instead, as Loopline's batch commit does);
  no hashing, no metadata), timed inside a fresh process: what the disk allows any add
  that keeps Loopline's durability guarantee. Its ratio to ``dvc add`` (which does not
  fsync) is the most such an add can reach on this machine.
- Re-add: the same commands again on the same, unchanged data (Loopline's home from its
  SDK run; DVC's repository from its first add); the CLI twice, with ``--json`` and with
  the output for people.

Usage:
    .venv/bin/python bench/bench_datasets.py [--repeat 5] [--files 1000] [--mib 1024]

Example:
    .venv/bin/python bench/bench_datasets.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, WORK, anchor_python, fmt_ratio, write_result

DVC_PIN = "dvc==3.67.1"
LOOPLINE_CLI = ROOT / ".venv" / "bin" / "loopline"
REREAD_TARGET_S = 0.2
FIRST_ADD_TARGET = 5.0
#: The SDK's rows: start-up, imports and opening the database are not timed (see above).
SDK_WARM = "ll.datasets.register in a running program (start-up untimed)"
_CHUNK = 16 * 1024 * 1024


# -- worker side (runs in a fresh process) --------------------------------------------------


def _copy_floor(src: Path, dest: Path) -> float:
    """Seconds to copy ``src`` (a file or a folder) durably, with nothing else: no hashing,
    no metadata. Written as Loopline writes (past the page cache, ``O_DIRECT``, where the
    file system allows it) by 8 threads, each copying 8 MiB pieces at their offsets (so a
    single file is written by all of them at once), then an fsync per file and of the
    folder (or, for a folder of many files, one flush of the file system, as Loopline's
    batch does where ``syncfs`` is trusted): what the disk allows any add that keeps the
    durability guarantee."""
    import mmap
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from loopline.core.artifacts import SYNCFS_MIN, _fsync, _fsync_all
    from loopline.core.syncfs import syncfs

    files = sorted(src.iterdir()) if src.is_dir() else [src]
    dest.mkdir(parents=True)
    chunk = 8 * 1024 * 1024
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    local = threading.local()
    started = time.perf_counter()
    fds: dict[Path, tuple[int, int, int]] = {}  # source -> (its fd, the copy's fd, size)
    for f in files:
        try:
            out = os.open(dest / f.name, flags | getattr(os, "O_DIRECT", 0), 0o644)
        except OSError:  # no O_DIRECT here: a buffered copy
            out = os.open(dest / f.name, flags, 0o644)
        fds[f] = (os.open(f, os.O_RDONLY), out, f.stat().st_size)

    def piece(job: tuple[Path, int]) -> None:
        f, offset = job
        if not hasattr(local, "buf"):  # page-aligned, as O_DIRECT needs
            local.buf = memoryview(mmap.mmap(-1, chunk))
        fin, fout, _ = fds[f]
        n = os.preadv(fin, [local.buf], offset)
        padded = -(-n // 4096) * 4096  # whole blocks; the padding is cut below
        local.buf[n:padded] = bytes(padded - n)
        os.pwrite(fout, local.buf[:padded], offset)

    # As Loopline makes a batch durable: one flush of the file system for many files.
    whole = len(files) >= SYNCFS_MIN

    def finish(f: Path) -> None:
        fin, fout, size = fds[f]
        os.ftruncate(fout, size)
        if not whole:
            os.fsync(fout)
        os.close(fout)
        os.close(fin)

    jobs = [(f, off) for f, (_, _, size) in fds.items() for off in range(0, size, chunk)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(piece, jobs))
        list(pool.map(finish, files))
    if not (whole and syncfs(dest)):
        _fsync_all([dest / f.name for f in files] if whole else [])
        _fsync(dest)
    return time.perf_counter() - started


def _worker(mode: str, home: Path, name: str, path: str) -> None:
    """``prepare`` a fresh home, ``register`` ``path`` or time its durable ``copy`` (floor);
    print the figures as JSON."""
    if mode == "copy":
        print(json.dumps({"seconds": _copy_floor(Path(path), home)}))
        return
    import loopline as ll

    ctx = ll.init(home=home)
    # Not part of the add: a new home migrates itself once; the data stage loads on first use.
    ctx.engine  # noqa: B018
    ll.datasets  # noqa: B018
    if mode == "prepare":
        print(json.dumps({"ok": True}))
        return
    started = time.perf_counter()
    version = ll.datasets.register(name, path)
    seconds = time.perf_counter() - started
    report = version.ingest
    print(
        json.dumps(
            {
                "seconds": seconds,
                "version": version.version,
                "created_now": version.created_now,
                "ingest": report.to_dict() if report is not None else None,
            }
        )
    )


# -- driver side ----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(WORK / "datasets" / "dvc-site")  # not /var/tmp/dvc
    return env


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


def _timed(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, str]:
    os.sync()
    started = time.perf_counter()
    stdout = _run(cmd, cwd=cwd, env=env)
    return time.perf_counter() - started, stdout


def _sdk(home: Path, name: str, path: Path) -> dict[str, Any]:
    os.sync()
    out = _run([sys.executable, __file__, "--worker", "register", str(home), name, str(path)])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _prepare_home(home: Path) -> None:
    _run([sys.executable, __file__, "--worker", "prepare", str(home), "-", "-"])


def _cli(home: Path, name: str, path: Path) -> tuple[float, dict[str, Any]]:
    env = {**_env(), "LOOPLINE_HOME": str(home)}
    seconds, out = _timed([str(LOOPLINE_CLI), "data", "add", name, str(path), "--json"], env=env)
    return seconds, json.loads(out)


def _dvc_repo(dvc: Path, repo: Path) -> None:
    repo.mkdir(parents=True)
    _run(["git", "init", "-q"], cwd=repo)
    _run(["git", "config", "user.email", "bench@example.invalid"], cwd=repo)
    _run(["git", "config", "user.name", "bench"], cwd=repo)
    _run([str(dvc), "init", "-q"], cwd=repo)
    _run([str(dvc), "config", "core.analytics", "false"], cwd=repo)


def _make_data(work: Path, files: int, total: int) -> tuple[Path, Path]:
    folder = work / "data" / "folder"
    folder.mkdir(parents=True)
    size = total // files
    for i in range(files):
        (folder / f"part-{i:04d}.bin").write_bytes(os.urandom(size))
    one = work / "data" / "one.bin"
    with one.open("wb") as f:
        left = total
        while left:
            n = min(_CHUNK, left)
            f.write(os.urandom(n))
            left -= n
    os.sync()
    time.sleep(0.1)  # older than the hash cache's racy window
    return folder, one


def _round(work: Path, dvc: Path, folder: Path, one: Path, i: int) -> dict[str, float]:
    """One run of every contender; seconds by ``case/contender``."""
    t: dict[str, float] = {}
    files = sorted(str(p) for p in folder.iterdir())
    for label, path in (("folder", folder), ("file", one)):
        # Loopline SDK, then the re-add of the same data on the same home.
        home = work / f"ll-sdk-{label}-{i}"
        res = _sdk(home, "bench", path)
        assert res["created_now"] and res["ingest"]["stored"] >= 1, res
        t[f"{label}/sdk"] = res["seconds"]
        if label == "folder":
            again = _sdk(home, "bench", path)
            assert not again["created_now"] and again["ingest"]["hashed"] == 0, again
            t["readd/sdk"] = again["seconds"]
            seconds, cli_again = _cli(home, "bench", path)
            assert not cli_again["created_now"], cli_again
            t["readd/cli"] = seconds
            env = {**_env(), "LOOPLINE_HOME": str(home)}
            seconds, said = _timed([str(LOOPLINE_CLI), "data", "add", "bench", str(path)], env=env)
            assert "(unchanged, same version)" in said, said
            t["readd/cli-people"] = seconds
        shutil.rmtree(home)
        # Loopline CLI on a fresh (already initialised) home.
        home = work / f"ll-cli-{label}-{i}"
        _prepare_home(home)
        seconds, out = _cli(home, "bench", path)
        assert out["created_now"], out
        t[f"{label}/cli"] = seconds
        shutil.rmtree(home)
        # DVC in a fresh repository; the data is renamed into it and back.
        repo = work / f"dvc-{label}-{i}"
        _dvc_repo(dvc, repo)
        inside = repo / path.name
        path.rename(inside)
        try:
            t[f"{label}/dvc"], _ = _timed([str(dvc), "add", "-q", path.name], cwd=repo)
            if label == "folder":
                t["readd/dvc"], _ = _timed([str(dvc), "add", "-q", path.name], cwd=repo)
        finally:
            inside.rename(path)
        shutil.rmtree(repo)
        # The floor: a durable copy of the same bytes, nothing else.
        floor = work / f"floor-{label}-{i}"
        os.sync()
        out = _run([sys.executable, __file__, "--worker", "copy", str(floor), "-", str(path)])
        t[f"{label}/copy"] = json.loads(out.strip().splitlines()[-1])["seconds"]
        shutil.rmtree(floor)
        # b2sum: read and hash, nothing stored.
        t[f"{label}/b2sum"], _ = _timed(["b2sum", *(files if label == "folder" else [str(one)])])
    return t


def _row(
    case: str, ours: float, anchor: str, theirs: float, target: str, met: bool | None
) -> dict[str, Any]:
    return {
        "case": case,
        "loopline": f"{ours:.2f} s",
        "anchor": anchor,
        "anchor_value": f"{theirs:.2f} s",
        "ratio": fmt_ratio(theirs / ours),
        "target": target,
        "met": met,
    }


def _rows(med: dict[str, float], gib: str, files: int, dvc_name: str) -> list[dict[str, Any]]:
    rows = []
    for label, what in (
        ("folder", f"folder of {files:,} files, {gib}"),
        ("file", f"one {gib} file"),
    ):
        for how, name in (("sdk", SDK_WARM), ("cli", "`loopline data add`")):
            ratio = med[f"{label}/dvc"] / med[f"{label}/{how}"]
            rows.append(
                _row(
                    f"first add, {what}, {name}",
                    med[f"{label}/{how}"],
                    f"{dvc_name} `dvc add`",
                    med[f"{label}/dvc"],
                    f">= {FIRST_ADD_TARGET:g}x",
                    ratio >= FIRST_ADD_TARGET,
                )
            )
        rows.append(
            _row(
                f"first add, {what}, ll.datasets.register vs a durable copy only",
                med[f"{label}/sdk"],
                "direct copy, 8 threads, made durable as Loopline does, no hash (floor)",
                med[f"{label}/copy"],
                "reference",
                None,
            )
        )
        rows.append(
            _row(
                f"first add, {what}: the durable copy alone (floor)",
                med[f"{label}/copy"],
                f"{dvc_name} `dvc add` (no fsync)",
                med[f"{label}/dvc"],
                "ceiling for a durable add",
                None,
            )
        )
        rows.append(
            _row(
                f"first add, {what}, ll.datasets.register vs hashing only",
                med[f"{label}/sdk"],
                "b2sum (hash only, 1 core)",
                med[f"{label}/b2sum"],
                "reference",
                None,
            )
        )
    for how, name in (
        ("sdk", SDK_WARM),
        ("cli", "`loopline data add --json`"),
        ("cli-people", "`loopline data add` (people's output)"),
    ):
        rows.append(
            _row(
                f"re-add of the unchanged folder, {name}",
                med[f"readd/{how}"],
                f"{dvc_name} `dvc add` (unchanged)",
                med["readd/dvc"],
                f"< {REREAD_TARGET_S:g} s",
                med[f"readd/{how}"] < REREAD_TARGET_S,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (medians are quoted)")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mib", type=int, default=1024, help="size of each workload")
    parser.add_argument(
        "--worker", nargs=4, metavar=("MODE", "HOME", "NAME", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        mode, home, name, path = args.worker
        _worker(mode, Path(home), name, path)
        return
    dvc = anchor_python("dvc", [DVC_PIN]).parent / "dvc"
    dvc_name = _run([str(dvc), "--version"]).strip()
    work = WORK / "datasets"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    samples: dict[str, list[float]] = {}
    load_start = os.getloadavg()
    try:
        folder, one = _make_data(work, args.files, args.mib * 1024 * 1024)
        for i in range(args.repeat):
            for key, value in _round(work, dvc, folder, one, i).items():
                samples.setdefault(key, []).append(value)
            print(
                f"round {i + 1}/{args.repeat}: "
                + ", ".join(f"{k} {v[-1]:.2f}" for k, v in sorted(samples.items())),
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in samples.items()}
    gib = f"{args.mib / 1024:g} GiB"
    rows = _rows(med, gib, args.files, f"dvc {dvc_name}")
    details = {
        "workload": f"{args.files} files x {args.mib // args.files} MiB; one {gib} file; "
        "random bytes",
        "repeat": args.repeat,
        "seconds": {k: [round(x, 4) for x in v] for k, v in sorted(samples.items())},
        "median_seconds": {k: round(v, 4) for k, v in sorted(med.items())},
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
    }
    path = write_result("datasets", rows, details)
    for row in rows:
        verdict = {True: "met", False: "NOT met", None: "reference"}[row["met"]]
        print(
            f"{row['case']}: {row['loopline']} vs {row['anchor_value']} ({row['ratio']}, "
            f"target {row['target']}, {verdict})"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
