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
import os
import selectors


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
