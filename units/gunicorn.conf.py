# gunicorn settings shared by every sum-golden-path site, passed by
# sum-gunicorn@<site>.service with --config. The site's own options
# (workers, threads, timeouts) are on the command line; see sum-site.toml(5).
#
# Fast graceful stops. gunicorn's threaded worker (gthread, used whenever
# threads > 1) waits for events with a one-second poll and does not watch
# the pipe its signal handlers write to, so an idle worker notices SIGTERM
# up to a second late. A restart cannot start the new gunicorn before the
# old one has exited (systemd holds the socket for one service), so every
# deploy would stall requests for that second. Registering the pipe with
# the worker's poller wakes it at once; in-flight requests still finish
# (graceful_timeout) as before. (gunicorn 24 and later wake the worker
# themselves; the extra registration is harmless there.)
import atexit
import logging
import os
import selectors
import sys

from gunicorn.config import KNOWN_SETTINGS as _KNOWN_SETTINGS


# The socket comes from systemd, or gunicorn does not start. The unit
# passes no --bind: sum-gunicorn@<site>.socket listens and systemd hands
# the socket over (LISTEN_FDS). When it hands over none (the socket unit
# vanished during a daemon-reload and came back without its descriptor),
# gunicorn would bind its default instead, 127.0.0.1:8000 (0.0.0.0:$PORT
# when the .env sets PORT), where Caddy never connects: the site is down
# and the unit looks healthy. So the default is no address at all, and
# on_starting refuses to go on without a socket, naming the unit to
# restart. A --bind on gunicorn's own command line (the tests, a run by
# hand) is honoured; one in GUNICORN_CMD_ARGS from the .env is not.
bind = []


def on_starting(server):
    # Called once per master, before it takes its listening sockets
    # (a reload on SIGHUP reads this file again but does not call it).
    if _socket_passed() or _bind_on_command_line(server):
        return
    site = os.environ.get("SUM_SITE") or "<site>"
    server.log.error(
        "systemd passed no listening socket (no LISTEN_FDS for pid %d): "
        "refusing to start rather than listen where Caddy never connects. "
        "Run `systemctl restart sum-gunicorn@%s.socket`: systemd opens "
        "the socket again and restarts this service with it.",
        os.getpid(),
        site,
    )
    sys.exit(1)


def _socket_passed():
    # As gunicorn's own systemd.listen_fds reads it (sd_listen_fds(3)); a
    # master re-executed on SIGUSR2 gets its sockets through GUNICORN_FD.
    if os.environ.get("GUNICORN_PID") and os.environ.get("GUNICORN_FD"):
        return True
    try:
        ours = int(os.environ.get("LISTEN_PID", "")) == os.getpid()
        return ours and int(os.environ.get("LISTEN_FDS", "")) > 0
    except ValueError:
        return False


def _bind_on_command_line(server):
    try:
        args = server.cfg.parser().parse_args(sys.argv[1:])
    except SystemExit:
        return False
    return bool(getattr(args, "bind", None))


# No control socket. gunicorn 25.1 added one for its `gunicornc` tool,
# started by the master in $XDG_RUNTIME_DIR or $HOME/.gunicorn/. The
# site's home is read-only for gunicorn (ProtectSystem=strict), so every
# start logged "[ERROR] Control server error: [Errno 30] Read-only file
# system"; nothing here uses it, and the deploy's bridge, a second
# gunicorn of the same site, would share its path. Set only where the
# setting exists: older gunicorns do not know it.
if any(s.name == "control_socket_disable" for s in _KNOWN_SETTINGS):
    control_socket_disable = True


def post_worker_init(worker):
    poller = getattr(worker, "poller", None)
    pipe = getattr(worker, "PIPE", None)
    if isinstance(poller, selectors.BaseSelector) and pipe:
        poller.register(pipe[0], selectors.EVENT_READ, _drain)


def _drain(fd):
    try:
        os.read(fd, 4096)
    except BlockingIOError:
        pass


# Fast exits. Once a worker has finished its last request, Python's own
# shutdown (tearing down every module of a Django process) takes about a
# third of a second per worker, all of it while the restart
# waits and requests queue. A process that ends cleanly (exit status 0)
# runs its atexit handlers (an error reporter's last flush, say), flushes
# the logs and leaves without the teardown. Any other exit (a worker that
# failed to boot, an error) takes the normal path, so gunicorn still sees
# its status.
def worker_exit(server, worker):
    exiting = sys.exc_info()[1]
    if isinstance(exiting, SystemExit) and exiting.code in (0, None):
        _leave()


def on_exit(server):
    # Called by the arbiter's halt(reason, exit_status) just before it
    # exits with that status; only a clean shutdown (0) is shortened.
    caller = sys._getframe(1)
    if caller.f_code.co_name == "halt" and caller.f_locals.get("exit_status") == 0:
        _leave()


def _leave():
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
