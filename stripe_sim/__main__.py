"""``python -m stripe_sim --port 12111 [--state FILE] [--webhook-url URL --webhook-secret S]``.

Binds to 127.0.0.1 only: the simulator accepts any test key, so it must never face a network.
"""

import argparse
import logging
import signal
import sys
import types

from werkzeug.serving import make_server

from stripe_sim.app import create_app
from stripe_sim.event_api import create_endpoint

HOST = "127.0.0.1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stripe_sim", description=__doc__)
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--state", help="snapshot file: loaded at start, saved after each change")
    parser.add_argument("--webhook-url", help="register a webhook endpoint for all events")
    parser.add_argument("--webhook-secret", help="its signing secret (whsec_...)")
    parser.add_argument(
        "--retry-days",
        default="3,5,7",
        help="days between retries of a failed renewal payment (default 3,5,7)",
    )
    parser.add_argument("--after-retries", choices=("cancel", "unpaid"), default="cancel")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    app = create_app(state_file=args.state)
    store = app.store
    store.config.retry_days = [int(d) for d in args.retry_days.split(",") if d.strip()]
    store.config.after_retries = args.after_retries
    if args.webhook_url:
        with store.lock:
            existing = [e for e in store.all("webhook_endpoint") if e["url"] == args.webhook_url]
            if existing:
                endpoint = existing[0]
                if args.webhook_secret:
                    endpoint["_secret"] = args.webhook_secret
            else:
                endpoint = create_endpoint(store, args.webhook_url, ["*"], secret=args.webhook_secret)
            app.persist()
        print(f"webhook endpoint {endpoint['url']} secret {endpoint['_secret']}", flush=True)

    server = make_server(HOST, args.port, app, threaded=True)

    def stop(_signum: int, _frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"stripe_sim listening on http://{HOST}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.dispatcher.stop()
        if args.state:
            app.store.save_to(args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
