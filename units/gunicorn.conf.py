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
# (graceful_timeout) as before.
import atexit
import logging
import os
import selectors
import sys


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
