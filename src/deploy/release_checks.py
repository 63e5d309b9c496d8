# The checks of a new release (SPEC §7 step 4), run by sum-deploy as the
# site's user from the release directory with the venv's python:
#
#   python -c "<this file>" WSGI_APP
#
# Every Django start-up costs a few tenths of a second of CPU (importing
# Django and the app), and a code-only deploy is mostly start-ups, so the
# checks share one process. Each runs exactly as its command line would:
# `manage.py check --deploy` and `manage.py showmigrations --plan` run the
# release's own manage.py (runpy, as `python manage.py` does), and each
# phase's status, stdout and stderr are its own, whether written by print,
# by a logging handler or by a C extension. Between them, the WSGI app is
# imported once and Django's effective STATIC_ROOT and MEDIA_ROOT are read.
#
# Protocol: stdout and stderr are files that sum-deploy reads by offset,
# so nothing is lost when the process dies mid-phase (a crash in a C
# extension, the OOM killer). After each phase, fd 3 carries one JSON line:
#   {"phase": NAME, "status": N, "value": ..., "stdout": [START, END],
#    "stderr": [START, END]}
# with the phase's byte range in each file. After the three checks, each
# line on stdin is a JSON array of manage.py arguments (e.g.
# ["collectstatic", "--noinput"]), run the same way and reported the same
# way. End of input ends the process.
import atexit
import importlib
import json
import logging
import os
import runpy
import sys
import traceback

RELEASE = os.getcwd()
MANAGE = os.path.join(RELEASE, "manage.py")
WSGI_APP = sys.argv[1]
# `python manage.py` puts the script's directory first on sys.path.
sys.path[0] = RELEASE

os.set_inheritable(3, False)
_report = os.fdopen(3, "w", encoding="utf-8")


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _offsets():
    return [os.lseek(fd, 0, os.SEEK_CUR) for fd in (1, 2)]


def _print_traceback(e):
    # As `python manage.py` would print it: without this file's frames.
    te = traceback.TracebackException.from_exception(e)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if f.filename not in ("<string>", "<frozen runpy>")]
    )
    print("".join(te.format()), end="", file=sys.stderr)


def phase(name, body):
    _flush()
    start = _offsets()
    status, value = 0, None
    try:
        value = body()
    except SystemExit as e:
        if e.code is None:
            status = 0
        elif isinstance(e.code, int):
            status = e.code
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException as e:
        _print_traceback(e)
        status = 1
    _flush()
    end = _offsets()
    message = {
        "phase": name,
        "status": status,
        "value": value,
        "stdout": [start[0], end[0]],
        "stderr": [start[1], end[1]],
    }
    _report.write(json.dumps(message) + "\n")
    _report.flush()


def manage(*args):
    if not os.path.isfile(MANAGE):
        raise SystemExit(f"can't open file {MANAGE!r}: no manage.py in the release")
    sys.argv = [MANAGE, *args]
    runpy.run_path(MANAGE, run_name="__main__")


def import_app(spec):
    module, _, attr = spec.partition(":")
    app = getattr(importlib.import_module(module), attr or "application")
    if not callable(app):
        raise SystemExit(f"{spec} is not callable")
    from django.conf import settings

    # The database as the app's own settings name it, with the OPTIONS
    # Django's PostgreSQL client passes on: the pre-migrate backup copies
    # it, and the deploy records it (without the password) with the
    # release. The password travels only through the report pipe.
    db = settings.DATABASES.get("default") or {}
    options = db.get("OPTIONS") or {}
    client_options = ("service", "passfile", "sslmode", "sslrootcert", "sslcert", "sslkey")
    return {
        "static_root": str(settings.STATIC_ROOT or ""),
        "media_root": str(settings.MEDIA_ROOT or ""),
        "database": {
            **{k.lower(): str(db.get(k) or "") for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")},
            "options": {k: str(options[k]) for k in client_options if options.get(k)},
        },
    }


phase("check", lambda: manage("check", "--deploy"))
phase("import", lambda: import_app(WSGI_APP))
phase("plan", lambda: manage("showmigrations", "--plan"))
for line in sys.stdin:
    args = json.loads(line)
    phase(args[0], lambda: manage(*args))

# Leave without Python's teardown of every module, which takes longer than
# the checks; atexit handlers and logs are flushed first.
atexit._run_exitfuncs()
logging.shutdown()
_flush()
os._exit(0)
