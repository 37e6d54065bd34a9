"""The ``fieldledger`` command."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
import time
from pathlib import Path

from server import auth
from server.db import immediate, open_database
from server.db.url import DatabaseURLError, database_target, redact

DEFAULT_DB = "data/fieldledger.db"


def _open(target: Path | str):
    """The database, migrated; an SQLite file's folder is created first."""
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    return open_database(target)


def _shown(target: Path | str) -> str:
    """The database as messages name it: a URL without its password."""
    return redact(str(target))


def _photos_refused(args) -> bool:
    """A PostgreSQL database has no file to keep the photos folder beside: it must be named."""
    if isinstance(args.db, Path) or args.photos_dir:
        return False
    print("fieldledger: --photos DIR (or FIELDLEDGER_PHOTOS) is required with a PostgreSQL"
          " database: the photos folder cannot sit beside a file", file=sys.stderr)
    return True


def _workers_refused(args) -> bool:
    """Several workers need a database several processes may write: not an SQLite file."""
    if args.workers <= 1 or not isinstance(args.db, Path):
        return False
    print(f"fieldledger: --workers {args.workers}: an SQLite database is written by one"
          " process; several workers need PostgreSQL (--db postgresql://...)", file=sys.stderr)
    return True


def serve_environment(args) -> dict[str, str]:
    """The settings ``server.app:app_from_environment`` reads in each worker."""
    from server.app import ENVIRONMENT

    given = {
        "photos": args.photos_dir, "workers": args.workers,
        "secure_cookies": 1 if args.secure_cookies else None,
        "password_checks": args.password_checks,
        "password_check_queue": args.password_check_queue,
        "pull_concurrency": args.pull_concurrency,
        "upload_concurrency": args.upload_concurrency,
    }
    return {"FIELDLEDGER_DB": str(args.db), **{
        name: "" if given[option] is None else str(given[option])
        for option, name in ENVIRONMENT.items()}}


def cmd_serve(args) -> int:
    import uvicorn

    from server.access_log import log_config

    if _workers_refused(args) or _photos_refused(args):
        return 2
    _open(args.db).close()
    os.environ.update(serve_environment(args))
    print(f"FieldLedger 走访台账: http://{args.host}:{args.port}/  (database: {_shown(args.db)})")
    print(f"Field app (手机走访 App), for phones: http://{args.host}:{args.port}/app/")
    if args.host in ("0.0.0.0", "::"):
        print(f"  (a phone opens it at this computer's network address instead of {args.host})")
    uvicorn.run(
        "server.app:app_from_environment",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_level="info",
        log_config=log_config(),
    )
    return 0


def _print_accounts(accounts) -> None:
    print("Demo accounts (演示账户):")
    for account in accounts:
        print(
            f"  {account.username:<14} {account.password:<10} {account.role:<6} "
            f"{account.display_name} · {account.scope}"
        )


def cmd_seed_demo(args) -> int:
    from server.demo import DemoDataExists, seed_demo

    db = _open(args.db)
    started = time.monotonic()
    try:
        accounts = seed_demo(db, seed=args.seed, problems=args.problems, progress=print)
    except DemoDataExists:
        print(f"{_shown(args.db)} already holds data; use another --db or delete it.",
              file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"Seeded {args.problems} problems in {time.monotonic() - started:.1f} s"
          f" into {_shown(args.db)}")
    _print_accounts(accounts)
    return 0


def cmd_demo(args) -> int:
    """Seed a demo database if there is none yet, then serve it."""
    from server.demo import demo_accounts, seed_demo

    if _workers_refused(args) or _photos_refused(args):
        return 2
    db = _open(args.db)
    try:
        if db.execute("SELECT count(*) FROM areas").fetchone()[0] == 0:
            print("Building demo data ...")
            accounts = seed_demo(db, seed=args.seed, problems=args.problems)
        else:
            accounts = demo_accounts(db)
    finally:
        db.close()
    _print_accounts(accounts)
    return cmd_serve(args)


def cmd_create_user(args) -> int:
    from server import authz
    from server.accounts import RESOURCE as USERS
    from server.validation import ValidationError

    password = args.password or getpass.getpass("Password: ")
    db = _open(args.db)
    raw = {
        "username": args.username,
        "display_name": args.display_name or args.username,
        "phone": args.phone,
        "roles": args.roles,
        "area_code": args.area,
        "unit_name": args.unit or "",
        "active": "1",
        "password": password,
    }
    root = db.execute("SELECT id, path FROM areas WHERE level = 1").fetchone()
    if root is None:
        print(
            "No areas yet: import the area tree first (fieldledger import areas FILE).",
            file=sys.stderr,
        )
        return 1
    system = authz.User(0, "system", "system", frozenset({authz.ADMIN}), root[0], root[1], None)
    try:
        data = USERS.prepare(USERS.clean(raw, creating=True))
        with immediate(db):
            user_id = USERS.create(db, system, data)
    except ValidationError as error:
        for field, message in error.errors.items():
            print(f"{field}: {message}", file=sys.stderr)
        return 2
    finally:
        db.close()
    print(f"Created user {args.username} (id {user_id}).")
    return 0


def cmd_import(args) -> int:
    from server.importer import ImportFailed, import_file, system_actor

    db = _open(args.db)
    try:
        report = import_file(db, system_actor(db), args.kind, Path(args.file))
    except ImportFailed as failure:
        print(f"Nothing imported from {args.file}:", file=sys.stderr)
        for problem in failure.problems:
            print(f"  row {problem.row}: {problem.message}", file=sys.stderr)
        return 2
    finally:
        db.close()
    print(f"Imported {report.created} {args.kind} from {args.file}.")
    return 0


def cmd_calendar_import(args) -> int:
    from server.calendar_entry import apply_year, parse_file
    from server.importer import ImportFailed, read_file

    path = Path(args.file)
    try:
        entered = parse_file(path.name, read_file(path), args.year)
    except ImportFailed as failure:
        print(f"Nothing entered from {args.file}:", file=sys.stderr)
        for problem in failure.problems:
            where = f"line {problem.row}" if problem.row else "file"
            print(f"  {where}: {problem.message}", file=sys.stderr)
        return 2
    db = _open(args.db)
    try:
        with immediate(db):
            applied = apply_year(db, entered, None, path.name)
    finally:
        db.close()
    print(f"Entered {applied.year}: {applied.holidays} holidays, {applied.workdays} adjusted"
          f" working days, from {args.file}.")
    print(f"Recomputed {len(applied.moved)} provisional deadline(s) of open problems.")
    for change in applied.moved:
        print(f"  {change.ledger_no or change.problem_id}: {change.old_deadline} ->"
              f" {change.deadline}{' (provisional)' if change.provisional else ''}")
    return 0


def cmd_calendar_export(args) -> int:
    from server.calendar_entry import MAX_YEAR, MIN_YEAR, export_csv

    if not MIN_YEAR <= args.year <= MAX_YEAR:
        print(f"The year must be between {MIN_YEAR} and {MAX_YEAR}.", file=sys.stderr)
        return 2
    db = _open(args.db)
    try:
        content = export_csv(db, args.year)
    finally:
        db.close()
    if args.output in (None, "-"):
        sys.stdout.write(content.decode("utf-8-sig"))
    else:
        Path(args.output).write_bytes(content)
        print(f"Wrote the {args.year} calendar to {args.output}.")
    return 0


def cmd_revoke_devices(args) -> int:
    db = _open(args.db)
    with immediate(db):
        ids = [
            row[0]
            for row in db.execute(
                "SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id"
                " WHERE u.username = ? AND d.revoked_at IS NULL",
                [args.username],
            ).fetchall()
        ]
        for device_id in ids:
            auth.revoke_device(db, device_id, "wipe" if args.wipe else "stop", None)
    db.close()
    print(f"Revoked {len(ids)} device(s) of {args.username}.")
    return 0


def cmd_simulate_devices(args) -> int:
    """Load-test a running server with simulated phones (sync/simulate.py)."""
    import json

    from sync.simulate import format_report, simulate

    users = []
    for spec in args.user or ["field:demo1234"]:
        username, sep, password = spec.partition(":")
        if not sep or not username:
            print(f"--user {spec!r}: expected USERNAME:PASSWORD", file=sys.stderr)
            return 2
        users.append((username, password))
    report = simulate(
        args.url, users, devices=args.devices, mutations_per_device=args.mutations,
        concurrency=args.concurrency or args.devices, photos=args.photos, seed=args.seed,
        progress=None if args.json else print,
    )
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_report(report))
    return 1 if report["errors"] or report["unsent"] else 0


def cmd_copy_to(args) -> int:
    """Copy the SQLite file of --db into a PostgreSQL database, then verify the copy."""
    import psycopg

    from server.db import url
    from server.db.copy import CopyRefused, copy_to, report_lines, verify
    from server.db.postgresql import connect

    option, value = _database_value(args.db)
    try:
        source = url.parse(value)
        target = url.parse(args.url)
    except url.DatabaseURLError as refused:
        print(f"fieldledger: copy-to: {refused}", file=sys.stderr)
        return 2
    if isinstance(source, url.PostgresServer):
        print(f"fieldledger: copy-to: {option} {source.redacted} is a PostgreSQL database;"
              " copy-to copies an SQLite file: give its path with --db", file=sys.stderr)
        return 2
    if not isinstance(target, url.PostgresServer):
        print(f"fieldledger: copy-to: {args.url} is not a postgresql:// URL; copy-to writes"
              " into PostgreSQL (an SQLite file is copied with cp)", file=sys.stderr)
        return 2
    if not source.path.is_file():
        print(f"fieldledger: copy-to: no SQLite file at {source.path}", file=sys.stderr)
        return 2
    db = open_database(source.path)
    try:
        if not args.verify_only:
            counts = copy_to(db, target.url)
            print(f"Copied {sum(counts.values())} rows of {len(counts)} tables from"
                  f" {source.path} into {target.redacted}.")
        with contextlib.closing(connect(target.url)) as copied:
            checks = verify(db, copied)
    except CopyRefused as refused:
        print(f"fieldledger: copy-to: {refused}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as failed:
        reason = (str(failed).strip().splitlines() or [type(failed).__name__])[0]
        print(f"fieldledger: copy-to: {target.redacted}: {reason}", file=sys.stderr)
        return 2
    finally:
        db.close()
    print("\n".join(report_lines(checks)))
    differing = [check.name for check in checks if not check.ok]
    if differing:
        print(f"The copy differs from {source.path} in: {', '.join(differing)}.",
              file=sys.stderr)
        return 1
    print(f"{target.redacted} holds what {source.path} holds.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldledger", description="FieldLedger 走访台账")
    parser.add_argument(
        "--db",
        default=None,
        help="an SQLite database file, or a PostgreSQL database's postgresql://user@host/dbname"
        f" URL (default: $FIELDLEDGER_DB, else {DEFAULT_DB})",
    )
    parser.add_argument(
        "--photos",
        dest="photos_dir",
        metavar="DIR",
        default=None,
        help="the photos folder, shared storage when several machines serve"
        " (default: $FIELDLEDGER_PHOTOS, else the database file's name + .photos;"
        " required with PostgreSQL)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_serve_options(sub):
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        sub.add_argument(
            "--secure-cookies",
            action="store_true",
            help="mark cookies Secure (when served only over HTTPS)",
        )
        sub.add_argument(
            "--forwarded-allow-ips",
            default="127.0.0.1",
            help="proxies trusted for X-Forwarded-Proto/For (the sign-in limits count"
            " failures per client address: list the proxy here)",
        )
        sub.add_argument(
            "--workers", type=int, default=1,
            help="server processes (more than 1 needs PostgreSQL); the bounds below are"
            " the machine's, shared out among them",
        )
        sub.add_argument(
            "--password-checks",
            type=int,
            default=None,
            help="password checks run at once on this machine (default: the number of CPUs)",
        )
        sub.add_argument(
            "--password-check-queue",
            type=int,
            default=None,
            help="sign-ins that may wait for a check before 503, on this machine"
            " (default: 32 x checks)",
        )
        sub.add_argument(
            "--pull-concurrency", type=int, default=None,
            help="pulls run at once on this machine before 503 (default: 4 x CPUs)",
        )
        sub.add_argument(
            "--upload-concurrency", type=int, default=None,
            help="photo uploads run at once on this machine before 503 (default: 4 x CPUs)",
        )

    serve = commands.add_parser("serve", help="run the web server")
    add_serve_options(serve)
    serve.set_defaults(func=cmd_serve)

    seed = commands.add_parser("seed-demo", help="fill an empty database with a demo city")
    seed.add_argument("--seed", type=int, default=1)
    seed.add_argument("--problems", type=int, default=600)
    seed.set_defaults(func=cmd_seed_demo)

    demo = commands.add_parser("demo", help="seed demo data if the database is empty, then serve")
    add_serve_options(demo)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--problems", type=int, default=600)
    demo.set_defaults(func=cmd_demo)

    create = commands.add_parser("create-user", help="add a user account")
    create.add_argument("username")
    create.add_argument("--display-name", default="")
    create.add_argument(
        "--roles", required=True, help="comma-separated: field,office,handler,leader,admin"
    )
    create.add_argument("--area", required=True, help="area code of the user's scope")
    create.add_argument("--unit", default="", help="unit name (handlers)")
    create.add_argument("--phone", default="")
    create.add_argument("--password", default="", help="asked for when omitted")
    create.set_defaults(func=cmd_create_user)

    importer = commands.add_parser("import", help="import areas, units, categories or users")
    importer.add_argument("kind", choices=["areas", "units", "categories", "users"])
    importer.add_argument("file", help="a .csv or .xlsx file")
    importer.set_defaults(func=cmd_import)

    calendar = commands.add_parser(
        "calendar", help="enter or export a year's holidays and adjusted working days"
    )
    calendar_commands = calendar.add_subparsers(dest="calendar_command", required=True)
    calendar_import = calendar_commands.add_parser(
        "import", help="enter a year from a CSV or XLSX file (date, 休/班, note)"
    )
    calendar_import.add_argument("file", help="a .csv or .xlsx file")
    calendar_import.add_argument(
        "--year", type=int, default=None, help="the year the rows must be in (default: theirs)"
    )
    calendar_import.set_defaults(func=cmd_calendar_import)
    calendar_export = calendar_commands.add_parser("export", help="write a year's rows as CSV")
    calendar_export.add_argument("year", type=int)
    calendar_export.add_argument("-o", "--output", default=None, help="file (default: stdout)")
    calendar_export.set_defaults(func=cmd_calendar_export)

    revoke = commands.add_parser("revoke-devices", help="revoke every device of a user")
    revoke.add_argument("username")
    revoke.add_argument("--wipe", action="store_true", help="tell the phones to erase their data")
    revoke.set_defaults(func=cmd_revoke_devices)

    simulate = commands.add_parser(
        "simulate-devices", help="load-test a running server with simulated phones"
    )
    simulate.add_argument("--url", default="http://127.0.0.1:8000")
    simulate.add_argument(
        "--user", action="append", metavar="USERNAME:PASSWORD",
        help="an account for the devices (repeat for several; default field:demo1234)",
    )
    simulate.add_argument("--devices", type=int, default=50)
    simulate.add_argument("--mutations", type=int, default=20, help="per device")
    simulate.add_argument(
        "--concurrency", type=int, default=0, help="devices at once (default: all)"
    )
    simulate.add_argument("--photos", action="store_true", help="attach small photos")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--json", action="store_true", help="print the report as JSON")
    simulate.set_defaults(func=cmd_simulate_devices, opens_database=False)  # talks to --url

    copy_to = commands.add_parser(
        "copy-to", help="copy the SQLite database (--db) into PostgreSQL, and verify the copy"
    )
    copy_to.add_argument("url", help="postgresql://... of an empty database")
    copy_to.add_argument(
        "--verify-only", action="store_true",
        help="compare the two databases without copying (counts, checksums, derived checks)",
    )
    copy_to.set_defaults(func=cmd_copy_to, opens_database=False)  # reads --db itself
    return parser


def _database_value(given: str | None) -> tuple[str, str]:
    """The database a command opens, and where it was named (for a refusal)."""
    if given is not None:
        return "--db", given
    if "FIELDLEDGER_DB" in os.environ:
        return "FIELDLEDGER_DB", os.environ["FIELDLEDGER_DB"]
    return "--db", DEFAULT_DB


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.photos_dir = args.photos_dir or os.environ.get("FIELDLEDGER_PHOTOS") or None
    if getattr(args, "opens_database", True):
        option, value = _database_value(args.db)
        try:
            args.db = database_target(value)
        except DatabaseURLError as refused:
            print(f"fieldledger: {option} {refused}", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
